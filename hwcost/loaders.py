"""Resolve a model spec: a zoo name, ``torchvision:NAME``, ``timm:NAME``, ``path/to/file.py:function`` or a
`transformers` config.json."""
from __future__ import annotations

import difflib
import importlib.util
import inspect
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

from .config_inputs import DEFAULT_IMAGE_INPUT, config_example
from .errors import InputError, UnknownModelError
from .zoo import ZOO


@dataclass
class LoadedModel:
    model: nn.Module
    example: Any          # default input: a shape without batch, or example tensors; None: see input_hint
    name: str
    input_hint: str | None = None   # why there is no default input, and what to pass instead

    def default_input(self) -> Any:
        """The example, or an InputError saying why there is none and what to pass."""
        if self.example is None:
            raise InputError(self.input_hint or f"{self.name} has no default input: pass one")
        return self.example


# factories that allocate storage (a weight's), and factories that compute values (what a module derives from
# its config in __init__): torch.device("meta") sends both to meta
_STORAGE_FACTORIES = frozenset((
    torch.empty, torch.empty_strided, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.randint,
    torch.randperm,
))
_VALUE_FACTORIES = frozenset((
    torch.tensor, torch.as_tensor, torch.asarray, torch.scalar_tensor, torch.arange, torch.linspace, torch.logspace,
    torch.eye, torch.tril_indices, torch.triu_indices, torch.fft.fftfreq, torch.fft.rfftfreq, torch.hann_window,
    torch.hamming_window, torch.bartlett_window, torch.blackman_window, torch.kaiser_window,
))


class _MetaStorage(TorchFunctionMode):
    """torch.device("meta") for the factories weights are allocated by (empty, zeros, ones, full, rand ...),
    the CPU for those that compute values, so that a constant a module derives in __init__ has one
    (build_on_meta then moves it to meta and keeps the values beside it).
    EnCodec keeps each convolution's stride and padding as integer buffers and pads its input by them; built
    all on meta they had no values, a values trace filled them with zeros, and the padding emptied the
    input."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if kwargs.get("device") is None and (func in _STORAGE_FACTORIES or func in _VALUE_FACTORIES):
            kwargs["device"] = "cpu" if func in _VALUE_FACTORIES else "meta"
        return func(*args, **kwargs)


# the values of the constants build_on_meta computed, by the meta tensor that stands for each in the model
KNOWN_VALUES: WeakIdKeyDictionary = WeakIdKeyDictionary()


def known_values(t: torch.Tensor) -> torch.Tensor | None:
    """The CPU values a meta tensor of a model built by build_on_meta stands for, if it computed them."""
    return KNOWN_VALUES.get(t)


def _meta_with_values(module: nn.Module) -> None:
    """Every real tensor the build left in the module (buffers, parameters, plain attributes) replaced by a
    meta one whose values KNOWN_VALUES keeps: the model is all on meta, as torch.device("meta") builds it
    (it runs on meta inputs), and a trace still reads its constants. Shared tensors stay shared."""
    done: dict[int, torch.Tensor] = {}

    def meta(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in done:
            m = t.detach().to("meta")
            if isinstance(t, nn.Parameter):
                m = nn.Parameter(m, requires_grad=t.requires_grad)
            KNOWN_VALUES[m] = t.detach()
            done[id(t)] = m
        return done[id(t)]

    for m in module.modules():
        for table in (m._parameters, m._buffers):
            for name, t in list(table.items()):
                if t is not None and t.device.type != "meta":
                    table[name] = meta(t)
        for name, t in list(vars(m).items()):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                setattr(m, name, meta(t))


def build_on_meta(fn: Callable[[], Any]) -> Any:
    """``fn()`` on the meta device (no weight memory, no initialisation time), the constants it computes
    (_MetaStorage) kept for the trace (known_values), outside any inference_mode of the caller's: its
    parameters would be inference tensors, which kernels treat as not requiring grad (aten.matmul then
    runs an LM head's last position as bmm, eager PyTorch as mm)."""
    with torch.inference_mode(False):
        try:
            with _MetaStorage():
                built = fn()
        except Exception:   # a builder that combines a computed constant with a weight: all on meta
            with torch.device("meta"):
                return fn()
        for part in built if isinstance(built, tuple) else (built,):   # a model, or (model, example)
            if isinstance(part, nn.Module):
                _meta_with_values(part)
        return built


def _build(fn: Callable[[], Any], meta: bool) -> Any:
    """Build on the meta device when asked (build_on_meta), else normally, outside the caller's
    inference_mode either way."""
    with torch.inference_mode(False):
        if not meta:
            return fn()
        try:
            return build_on_meta(fn)
        except Exception:  # some builders need real tensors at construction; build those normally
            return fn()


def _close(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def load_model(spec: str, meta: bool = True) -> LoadedModel:
    """Build the model a spec names. ``meta=True`` builds it without weights (enough for analysis)."""
    if spec in ZOO:
        e = ZOO[spec]
        return LoadedModel(_build(e.build, meta), e.example(), spec)
    prefix, _, rest = spec.partition(":")
    if prefix == "torchvision" and rest:
        return _load_torchvision(rest, meta)
    if prefix == "timm" and rest:
        return _load_timm(rest, meta)
    if ".py:" in spec or spec.endswith(".py"):
        return _load_file(spec, meta)
    if config_json_path(spec):
        return _load_config(spec, meta)
    raise UnknownModelError(
        f"unknown model {spec!r}.{_close(spec, list(ZOO))} Built-in models: {', '.join(ZOO)} "
        "(`hwcost zoo` describes them); or use torchvision:NAME, timm:NAME, path/to/file.py:function, or a "
        "transformers config.json (or the folder holding it)."
    )


def config_json_path(spec: Any) -> str | None:
    """The config.json a spec names (the file, or a model folder holding one), else None."""
    if not isinstance(spec, (str, os.PathLike)):
        return None
    path = os.path.join(spec, "config.json") if os.path.isdir(spec) else os.fspath(spec)
    return path if path.endswith(".json") and os.path.isfile(path) else None


def transformers_config(path: str) -> Any:
    """A transformers config from its config.json (no weights, nothing downloaded)."""
    import json

    tf = _import("transformers", path)
    with open(path) as f:
        try:
            fields = json.load(f)
        except json.JSONDecodeError as e:
            raise UnknownModelError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(fields, dict) or "model_type" not in fields:
        raise UnknownModelError(f"{path} has no model_type: not a transformers config.json")
    try:
        return tf.AutoConfig.for_model(fields.pop("model_type"), **fields)
    except Exception as e:   # an unknown model_type, or fields this transformers version refuses
        raise UnknownModelError(f"transformers cannot read {path} ({type(e).__name__}: {e}); a newer transformers "
                                "may know its model_type") from e


# what a config is built as: a decoder with its LM head, a vision-language model (Qwen2.5-VL has no causal-LM
# class), an encoder-decoder with its LM head, else the bare model (encoders, vision backbones)
CAUSAL_CLASSES = ("AutoModelForCausalLM", "AutoModelForImageTextToText")


DEFAULT_CLASSES = (*CAUSAL_CLASSES, "AutoModelForSeq2SeqLM", "AutoModel")
ENCODER_DECODER_CLASSES = ("AutoModelForSeq2SeqLM", "AutoModelForSpeechSeq2Seq", "AutoModelForImageTextToText",
                           "AutoModel")


def build_transformers(config: Any, classes: tuple[str, ...] = DEFAULT_CLASSES, meta: bool = True) -> nn.Module | None:
    """The first of ``classes`` transformers maps this config to, built on meta (or with random weights, to
    time it); None if none does."""
    tf = _import("transformers", type(config).__name__)
    kind = getattr(config, "model_type", type(config).__name__)
    # on meta with no fallback to real weights, as _build has: a 70B config would allocate them
    build = build_on_meta if meta else (lambda fn: _build(fn, False))
    for auto in classes:
        if not hasattr(tf, auto):
            continue
        try:
            return build(lambda: getattr(tf, auto).from_config(config))
        except ValueError:   # transformers: no class of that kind for this config
            continue
        except ImportError as e:   # a backbone from another library (DETR's from timm)
            raise UnknownModelError(f"transformers needs a package that is not installed to build a {kind!r} model: "
                                    f"{' '.join(str(e).split())}") from e
        except Exception as e:   # the model's own constructor: a field it needs is missing or off
            raise UnknownModelError(f"transformers could not build a {kind!r} model from this config "
                                    f"({type(e).__name__}: {e}); pass the model's own config.json (from its Hub "
                                    "page), which sets every field its code reads") from e
    return None


def _load_config(spec: str, meta: bool) -> LoadedModel:
    """A transformers config.json, built on meta unless it is to be timed, with the input its model reads
    (config_example)."""
    path = config_json_path(spec)
    config = transformers_config(path)
    # an encoder-decoder whole: its causal-LM class, where transformers has one (BART, Whisper), is the decoder alone
    classes = ENCODER_DECODER_CLASSES if getattr(config, "is_encoder_decoder", False) else DEFAULT_CLASSES
    model = build_transformers(config, classes, meta=meta)
    kind = getattr(config, "model_type", "model")
    if model is None:
        raise UnknownModelError(f"transformers has no model class for a {kind!r} config")
    example, hint = config_example(model, config)
    return LoadedModel(model, example, f"{kind} ({os.path.basename(os.path.dirname(os.path.abspath(path)))})",
                       hint)


EXTRAS = {"transformers": " (pip install 'hwcost[llm]')"}   # packages an extra of hwcost installs


def _import(module: str, spec: str) -> Any:
    try:
        return importlib.import_module(module)
    except Exception as e:  # ImportError, or a CUDA-only build failing to load its compiled ops
        raise UnknownModelError(
            f"cannot load {spec!r}: {module} does not import here ({type(e).__name__}: {e}). "
            f"Install {module}{EXTRAS.get(module, '')}, or use a built-in model (`hwcost zoo`)."
        ) from e


def _quietly(build: Callable[..., nn.Module], *args: Any, **kwargs: Any) -> nn.Module:
    """A library's builder, its warnings silenced: they speak of weights this build does not load
    (inception's init_weights, a quantizer's observers that saw random data), not of the model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build(*args, **kwargs)


def _load_torchvision(name: str, meta: bool) -> LoadedModel:
    tv = _import("torchvision", f"torchvision:{name}")
    available = tv.models.list_models()
    if name not in available:
        raise UnknownModelError(f"torchvision has no model {name!r}.{_close(name, available)}")
    builder = tv.models.get_model_builder(name)
    options: dict[str, Any] = {"weights": None}
    accepts = inspect.signature(builder).parameters
    if "weights_backbone" in accepts:
        options["weights_backbone"] = None  # its default is ImageNet weights, which would download
    if "quantize" in accepts:
        options["quantize"] = True          # quantized_*: the int8 model its name promises, not its float twin
    model = _build(lambda: _quietly(builder, **options), meta)
    return LoadedModel(model, _torchvision_input(tv, name, model), f"torchvision:{name}")


# Detection models resize what they are given to their own size (800 px, or 300-320 for SSD): a VGA
# camera frame is what they are given. Video models take 16-frame clips, as torchvision's GFLOPS table
# counts them.
DETECTION_FRAME = (3, 480, 640)
VIDEO_CLIP_FRAMES = 16
OPTICAL_FLOW_FRAME = (3, 520, 960)   # RAFT's two frames, as torchvision's optical-flow example sizes them


def _torchvision_input(tv: Any, name: str, model: nn.Module) -> Any:
    """The input the model's default weights are evaluated at (their transforms' crop); a ViT built
    without weights keeps its own image_size."""
    models = tv.models
    if name in models.list_models(module=models.optical_flow):
        return (OPTICAL_FLOW_FRAME, OPTICAL_FLOW_FRAME)
    if name in models.list_models(module=models.detection):
        return DETECTION_FRAME
    transforms = models.get_model_weights(name).DEFAULT.transforms()
    side = getattr(model, "image_size", None) or (
        getattr(transforms, "crop_size", None) or getattr(transforms, "resize_size", None) or [224])[0]
    if name in models.list_models(module=models.video):
        return (3, VIDEO_CLIP_FRAMES, side, side)
    return (3, side, side)


def _load_timm(name: str, meta: bool) -> LoadedModel:
    timm = _import("timm", f"timm:{name}")
    available = timm.list_models()
    if name not in available:
        raise UnknownModelError(f"timm has no model {name!r}.{_close(name, available)}")
    model = _build(lambda: _quietly(timm.create_model, name, pretrained=False), meta)
    shape = tuple(model.pretrained_cfg.get("input_size", DEFAULT_IMAGE_INPUT)) if hasattr(
        model, "pretrained_cfg") else DEFAULT_IMAGE_INPUT
    return LoadedModel(model, shape, f"timm:{name}")


def _load_file(spec: str, meta: bool) -> LoadedModel:
    path, _, func = spec.rpartition(":") if ".py:" in spec else (spec, "", "")
    func = func or "build_model"
    if not os.path.isfile(path):
        raise UnknownModelError(f"model file {path!r} does not exist (spec {spec!r}; form: path/to/file.py:function)")
    mod_name = f"hwcost_user_{abs(hash(os.path.abspath(path)))}"
    loader_spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[mod_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as e:
        raise UnknownModelError(f"importing {path} failed: {type(e).__name__}: {e}") from e
    fn = getattr(module, func, None)
    if not callable(fn):
        names = [n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_")]
        raise UnknownModelError(
            f"{path} has no function {func!r}.{_close(func, names)} Functions there: {', '.join(names) or 'none'}"
        )
    built = _build(fn, meta)
    example: Any = DEFAULT_IMAGE_INPUT
    if isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], nn.Module):
        built, example = built  # a builder may return (model, example input)
    if not isinstance(built, nn.Module):
        raise UnknownModelError(
            f"{path}:{func} returned {type(built).__name__}; it must return an nn.Module "
            "or (nn.Module, example input)"
        )
    return LoadedModel(built, example, f"{os.path.basename(path)}:{func}")
