"""The input a `transformers` model built from a config reads, sized from that config: token ids, an image, a
video clip, a waveform, speech features, a forecaster's history, or both a dual encoder's text and image
(config_example)."""
from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
import torch.nn as nn

DEFAULT_IMAGE_INPUT = (3, 224, 224)   # the ImageNet resolution: a vision model whose input names no size

DEFAULT_TOKENS = 128            # a config's default text input, cut to the positions its model has
DEFAULT_AUDIO_SECONDS = 1.0     # a waveform input: one second at the config's sampling rate
# speech features (log-mel, filterbank) per second of audio: the 10 ms hop of Kaldi's, NeMo's and Whisper's front ends
FEATURE_FRAMES_PER_SECOND = 100


# sub-configs an input's sizes are looked up in first (CLIP's vision_config, Parakeet's encoder_config)
_INPUT_SUB_CONFIGS = ("vision_config", "audio_config", "encoder", "encoder_config", "backbone_config")


def _sub_configs(config: Any, depth: int = 2) -> list[Any]:
    """The config and the sub-configs a composite model reads its inputs through, breadth first: the usual input
    towers (_INPUT_SUB_CONFIGS), then the others the config declares (``sub_configs``: DAC's inside PE-Audio),
    then theirs, ``depth`` levels down (SAM 2's image size sits in vision_config.backbone_config)."""
    out, level = [config], [config]
    for _ in range(depth):
        nxt = []
        for c in level:
            declared = list(getattr(c, "sub_configs", None) or {})
            for k in [*_INPUT_SUB_CONFIGS, *(k for k in declared if k not in _INPUT_SUB_CONFIGS)]:
                sub = getattr(c, k, None)
                if sub is not None and not isinstance(sub, (dict, str, int, float, list, tuple)) \
                        and all(sub is not o for o in out):
                    out.append(sub)
                    nxt.append(sub)
        level = nxt
    return out


def _field(config: Any, name: str) -> Any:
    """``name`` from the config or the first sub-config that sets it."""
    for c in _sub_configs(config):
        value = getattr(c, name, None)
        if value is not None:
            return value
    return None


def _image_hw(config: Any) -> tuple[int, int] | None:
    size = _field(config, "image_size")
    if isinstance(size, dict):   # some processors' {"height": h, "width": w}
        size = (size.get("height"), size.get("width"))
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size, size
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(d, int) and d > 0 for d in size):
        return int(size[0]), int(size[1])
    return None


def _token_ids(text: Any) -> torch.Tensor:
    positions = getattr(text, "max_position_embeddings", None)
    n = min(DEFAULT_TOKENS, positions) if isinstance(positions, int) and positions > 0 else DEFAULT_TOKENS
    return torch.zeros(1, n, dtype=torch.long)


def _channels(config: Any) -> int:
    """An image's or a video frame's channels: the config's num_channels, else 3 (RGB)."""
    channels = _field(config, "num_channels")
    return channels if isinstance(channels, int) and channels > 0 else DEFAULT_IMAGE_INPUT[0]


def _image(config: Any) -> torch.Tensor:
    h, w = _image_hw(config) or DEFAULT_IMAGE_INPUT[1:]
    return torch.zeros(1, _channels(config), h, w)


def _waveform(model: nn.Module, config: Any, beside: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """One second of audio for a model that reads samples: (batch, samples) as wav2vec 2.0 and HuBERT read them,
    or (batch, channels, samples) as codecs do (EnCodec's audio_channels; DAC and X-Codec take one channel in
    that layout, named nowhere in their configs: each layout is tried on a meta trace, _first_that_runs).
    None without a sampling rate to size it by, except for the wav2vec 2.0 family, whose feature encoders are
    all trained on 16 kHz."""
    rate = next((r for k in ("sampling_rate", "sample_rate", "input_sampling_rate")
                 if isinstance(r := _field(config, k), int)), None)
    if rate is None and _field(config, "conv_dim") is not None:
        rate = 16_000
    if rate is None or rate <= 0:
        return None
    samples = int(rate * DEFAULT_AUDIO_SECONDS)
    channels = _field(config, "audio_channels")
    if isinstance(channels, int):
        return torch.zeros(1, channels, samples)
    return _first_that_runs(model, "input_values", [torch.zeros(1, samples), torch.zeros(1, 1, samples)], beside)


def _mel(config: Any) -> torch.Tensor | None:
    """Whisper-style log-mel features, (batch, mel bins, frames): the full window its encoder's positions
    cover (two frames per position after its stride-2 convolution); None for other layouts."""
    bins, positions = _field(config, "num_mel_bins"), _field(config, "max_source_positions")
    if isinstance(bins, int) and isinstance(positions, int) and bins > 0 and positions > 0:
        return torch.zeros(1, bins, 2 * positions)
    return None


def _feature_bins(config: Any) -> int | None:
    """Features per frame of a speech model's input: its mel bins (Parakeet, Whisper), its filterbank's
    input size (wav2vec 2.0-BERT), or Speech2Text's features per channel times its channels."""
    for name in ("num_mel_bins", "input_feat_size", "feature_projection_input_dim"):
        if isinstance(bins := _field(config, name), int) and bins > 0:
            return bins
    per_channel, channels = _field(config, "input_feat_per_channel"), _field(config, "input_channels")
    if isinstance(per_channel, int) and per_channel > 0:
        return per_channel * (channels if isinstance(channels, int) and channels > 0 else 1)
    return None


def _features(model: nn.Module, config: Any, name: str, beside: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """Speech features for a second of audio (FEATURE_FRAMES_PER_SECOND frames) in the layout the model
    runs: (batch, frames, bins) as Conformer and wav2vec 2.0-BERT encoders read them, or (batch, bins,
    frames) as Whisper-style convolutional front ends do. transformers' speech models use both under the same
    argument name and no config field says which (_first_that_runs). None where the config gives no bins or
    neither layout runs."""
    bins = _feature_bins(config)
    if bins is None:
        return None
    frames = int(FEATURE_FRAMES_PER_SECOND * DEFAULT_AUDIO_SECONDS)
    return _first_that_runs(model, name, [torch.zeros(1, frames, bins), torch.zeros(1, bins, frames)], beside)


# How a forward fares on inputs traced on meta (no weights touched, no arithmetic): "runs", "undecided" (the
# trace stopped only for want of values: an op with no meta kernel, which may run on real tensors) or "fails".
# Set by hwcost.analysis, which traces and sits above this module; unset, every candidate is taken as running.
trial: Callable[[nn.Module, dict[str, torch.Tensor]], str] | None = None


def _first_that_runs(model: nn.Module, name: str, candidates: list[torch.Tensor],
                     beside: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The first of ``candidates`` for the input ``name`` (with the inputs ``beside`` it) on which the model's
    forward runs (``trial``); else the first it was undecided on; else None."""
    undecided = None
    for x in candidates:
        verdict = trial(model, {name: x, **beside}) if trial is not None else "runs"
        if verdict == "runs":
            return x
        if verdict == "undecided" and undecided is None:
            undecided = x
    return undecided


def _video(config: Any) -> torch.Tensor | None:
    """A clip of the config's frame count, (batch, frames, channels, height, width) as VideoMAE, ViViT,
    TimeSformer and V-JEPA 2 read it; None where the config names no frame count."""
    frames = _field(config, "num_frames") or _field(config, "frames_per_clip")
    if not isinstance(frames, int) or frames <= 0:
        return None
    crop = _field(config, "crop_size")
    h, w = _image_hw(config) or ((crop, crop) if isinstance(crop, int) and crop > 0 else DEFAULT_IMAGE_INPUT[1:])
    return torch.zeros(1, frames, _channels(config), h, w)


def _series(config: Any) -> torch.Tensor | None:
    """A forecaster's history, (batch, context length[, channels]) as its config sizes it (PatchTST, TimesFM)."""
    length, channels = _field(config, "context_length"), _field(config, "num_input_channels")
    if not isinstance(length, int) or length <= 0:
        return None
    return torch.zeros(1, length, channels) if isinstance(channels, int) and channels > 0 else torch.zeros(1, length)


def config_example(model: nn.Module, config: Any) -> tuple[Any, str | None]:
    """The input a model built from a config reads, from its ``main_input_name`` and the config's sizes:
    token ids (at most DEFAULT_TOKENS, within its positions), an image of its size (224 x 224 where it
    names none), a clip of its frame count, a second of audio or of speech features, Whisper's mel window, or
    a forecaster's context; an encoder-decoder also gets decoder ids, and a contrastive dual encoder (CLIP)
    both its text and its image. (None, why) where the config does not size the input: the caller asks for
    --input."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        params = {}
    main = getattr(model, "main_input_name", "input_ids")
    # a sub-model may inherit its composite's name (SmolVLM's vision tower), or name several (OneFormer)
    if not isinstance(main, str) or (params and main not in params):
        main = next(iter(params), "input_ids")
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    has_vocab = bool(getattr(text, "vocab_size", None))
    inputs: dict[str, torch.Tensor] = {}
    decoder: dict[str, torch.Tensor] = {}
    if getattr(config, "is_encoder_decoder", False) and has_vocab and "decoder_input_ids" in params:
        # one teacher-forced forward: as many tokens out as in (T5, BART), or 128 from an image or audio
        n = _token_ids(text).shape[1] if main == "input_ids" else DEFAULT_TOKENS
        decoder["decoder_input_ids"] = torch.zeros(1, n, dtype=torch.long)
    if main == "pixel_values":
        inputs["pixel_values"] = v if (v := _video(config)) is not None else _image(config)
    elif main == "pixel_values_videos":
        if (clip := _video(config)) is not None:
            inputs[main] = clip
    elif main == "input_values":
        if (wave := _waveform(model, config, decoder)) is not None:
            inputs["input_values"] = wave
    elif main in ("input_features", "audio_mel"):
        if main == "input_features" and (mel := _mel(config)) is not None:
            inputs[main] = mel
        elif (feats := _features(model, config, main, decoder)) is not None:
            inputs[main] = feats
    elif main == "past_values":
        if (series := _series(config)) is not None:
            inputs["past_values"] = series
    elif main == "input_ids":
        inputs["input_ids"] = _token_ids(text)
        if "pixel_values" in params and "return_loss" in params:   # a contrastive dual encoder needs both
            inputs["pixel_values"] = _image(config)
    if not inputs:
        kind = getattr(config, "model_type", type(config).__name__)
        return None, (f"hwcost cannot size the input of a {kind!r} model from its config (its forward reads "
                      f"{main!r}): pass --input with the shape without batch (e.g. 3,224,224 or 128:int64), or "
                      "call hwcost.predict with your own tensors")
    inputs.update(decoder)
    if list(inputs) == ["input_ids"]:
        return inputs["input_ids"], None
    if list(inputs) == ["pixel_values"]:
        return tuple(inputs["pixel_values"].shape[1:]), None
    return inputs, None
