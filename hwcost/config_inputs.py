"""The input a `transformers` model built from a config reads, sized from that config: token ids, an image, a
waveform, mel features, a forecaster's history, or both a dual encoder's text and image (config_example)."""
from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn as nn

DEFAULT_IMAGE_INPUT = (3, 224, 224)   # the ImageNet resolution: a vision model whose input names no size

DEFAULT_TOKENS = 128            # a config's default text input, cut to the positions its model has
DEFAULT_AUDIO_SECONDS = 1.0     # a waveform input: one second at the config's sampling rate


def _sub_configs(config: Any) -> list[Any]:
    """The config and the sub-configs a composite model reads its inputs through (CLIP's vision_config)."""
    subs = [getattr(config, k, None) for k in ("vision_config", "audio_config", "encoder", "backbone_config")]
    return [config, *(c for c in subs if c is not None and not isinstance(c, dict))]


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


def _image(config: Any) -> torch.Tensor:
    channels = _field(config, "num_channels")
    h, w = _image_hw(config) or DEFAULT_IMAGE_INPUT[1:]
    return torch.zeros(1, channels if isinstance(channels, int) and channels > 0 else 3, h, w)


def _waveform(config: Any) -> torch.Tensor | None:
    """One second of audio for a model that reads samples (wav2vec 2.0, HuBERT: (batch, samples); a codec
    with audio_channels: (batch, channels, samples)); None without a sampling rate to size it by, except
    for the wav2vec 2.0 family, whose feature encoders are all trained on 16 kHz."""
    rate = _field(config, "sampling_rate")
    if not isinstance(rate, int) and _field(config, "conv_dim") is not None:
        rate = 16_000
    if not isinstance(rate, int) or rate <= 0:
        return None
    samples = int(rate * DEFAULT_AUDIO_SECONDS)
    channels = _field(config, "audio_channels")
    return torch.zeros(1, channels, samples) if isinstance(channels, int) else torch.zeros(1, samples)


def _mel(config: Any) -> torch.Tensor | None:
    """Whisper-style log-mel features, (batch, mel bins, frames): the full window its encoder's positions
    cover (two frames per position after its stride-2 convolution); None for other layouts."""
    bins, positions = _field(config, "num_mel_bins"), _field(config, "max_source_positions")
    if isinstance(bins, int) and isinstance(positions, int) and bins > 0 and positions > 0:
        return torch.zeros(1, bins, 2 * positions)
    return None


def _series(config: Any) -> torch.Tensor | None:
    """A forecaster's history, (batch, context length[, channels]) as its config sizes it (PatchTST, TimesFM)."""
    length, channels = _field(config, "context_length"), _field(config, "num_input_channels")
    if not isinstance(length, int) or length <= 0:
        return None
    return torch.zeros(1, length, channels) if isinstance(channels, int) and channels > 0 else torch.zeros(1, length)


def config_example(model: nn.Module, config: Any) -> tuple[Any, str | None]:
    """The input a model built from a config reads, from its ``main_input_name`` and the config's sizes:
    token ids (at most DEFAULT_TOKENS, within its positions), an image of its size (224 x 224 where it
    names none), a second of audio, Whisper's mel window, or a forecaster's context; an encoder-decoder
    also gets decoder ids, and a contrastive dual encoder (CLIP) both its text and its image. (None, why)
    where the config does not size the input: the caller asks for --input."""
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
    if main == "pixel_values":
        inputs["pixel_values"] = _image(config)
    elif main == "input_values":
        if (wave := _waveform(config)) is not None:
            inputs["input_values"] = wave
    elif main == "input_features":
        if (mel := _mel(config)) is not None:
            inputs["input_features"] = mel
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
    if getattr(config, "is_encoder_decoder", False) and has_vocab and "decoder_input_ids" in params:
        # one teacher-forced forward: as many tokens out as in (T5, BART), or 128 from an image or audio
        n = inputs["input_ids"].shape[1] if "input_ids" in inputs else DEFAULT_TOKENS
        inputs["decoder_input_ids"] = torch.zeros(1, n, dtype=torch.long)
    if list(inputs) == ["input_ids"]:
        return inputs["input_ids"], None
    if list(inputs) == ["pixel_values"]:
        return tuple(inputs["pixel_values"].shape[1:]), None
    return inputs, None
