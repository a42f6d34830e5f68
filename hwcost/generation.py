"""hwcost.predict_generation: what generating text with a causal language model costs on a device — time
to first token, per-token decode, tokens/s, energy per token, weights and KV-cache memory, and whether it
fits — from the model or its config alone, traced on meta tensors.

The prefill is one forward of the prompt (all-ones mask, ``logits_to_keep=1``, a fresh cache), as
``generate()`` calls it; its output gives the first new token, so ``new_tokens - 1`` decode steps follow,
each one forward of one token over a KV cache of the current length. A step's cost is traced exactly at
a few context lengths (the first and last step, the middle, and each sliding window's edge) and linear
between them, which is exact for attention whose work grows linearly with the cache. Each step is given
the cache the model's own prefill returns (traced once at two tokens, its keys and values grown to the
context by the cache class's own update) and the inputs the model's own prepare_inputs_for_generation
makes, so multi-query and latent attention, sliding windows, and state-space or hybrid layers (a fixed
recurrent state instead of keys and values) come out as generate() runs them; cache bytes are read from it.
Weight-only quantization (int8/int4 weights, float activations) and a KV-cache dtype change bytes, not
MACs. What ``generate()`` spends per step around the forward (sampling, stopping checks, cache
bookkeeping in Python) is the profile's ``overhead_us.per_generate_step``, measured by calibration, or
derived from its dispatch time where no measurement exists (said in ``assumptions``).

Long because the stage is one flow: loading a model or config, the inputs generate() passes, the
weight and KV formats, and the record whose figures are defined here.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from . import report
from .analysis import Analysis, analyze, run_trace
from .conventions import dtype_name, itemsize, parse_dtype
from .devices import DeviceProfile, MemoryFit, load_device, memory_fit
from .errors import InputError, UnknownModelError
from .inputs import map_tensors, tensors_in
from .loaders import CAUSAL_CLASSES, build_transformers, config_json_path, load_model, transformers_config
from .predict import Prediction, predict_analysis
from .trace import materialized_once

# bytes per weight of weight-only formats: int8 per-channel scales are negligible; int4 carries one
# float16 scale per group of 128 weights, the group size GPTQ and AWQ deploy by default
WEIGHT_BYTES = {"int8": 1.0, "int4": 0.5 + 2 / 128}
# what generate() costs per step around the model, in dispatches (multiples of the profile's host_per_op),
# where the profile has no measurement: medians of 7 rounds by calibration/derive_generate_overhead.py on
# this project's 2-vCPU Intel Xeon VM, 1 thread, transformers 5.24, torch 2.13, 2026-12-02, called with an
# all-ones attention mask and min_new_tokens = max_new_tokens (calibration/reference/README.md): per step at
# no vocabulary 93.3 (85-98) ...
GENERATE_STEP_DISPATCHES = 93.3
# ... per step per 1,000 vocabulary entries on top (the logits processors, argmax and stopping checks pass
# over the whole vocabulary; 7.6-8.4), on a CPU; a GPU runs those passes as a few kernels whose launches
# the fixed part holds ...
GENERATE_VOCAB_DISPATCHES_PER_1K = 7.93
# ... and per generate() call before its first forward (generation config, logits processors, stopping
# criteria, cache; 363-512)
GENERATE_CALL_DISPATCHES = 390.5
# PyTorch splits an elementwise or reduction op across its threads above this many elements (at::internal::
# GRAIN_SIZE): a vocabulary past it is processed by all of a CPU profile's threads
INTRA_OP_GRAIN = 32768


def generate_step_us(profile: DeviceProfile, vocab: int) -> tuple[float, list[str]]:
    """generate()'s own microseconds per step over ``vocab`` logits (the vocabulary times the batch), and
    what was assumed where the profile has no measurement."""
    notes = []
    if profile.generate_step_us is not None:
        fixed = profile.generate_step_us
    else:
        fixed = GENERATE_STEP_DISPATCHES * profile.host_per_op_us
        per = "dispatch time" if profile.execution == "sequential" else \
            "host time per op (a GPU op's, launch included: an upper bound)"
        notes.append(f"generate()'s own time per step: {fixed:,.0f} us = {GENERATE_STEP_DISPATCHES:g} x the "
                     f"profile's {per}, the ratio measured on the reference host; calibrate to measure it here")
    per_1k = profile.generate_step_per_1k_vocab_us
    if per_1k is None:
        per_1k = GENERATE_VOCAB_DISPATCHES_PER_1K * profile.host_per_op_us if profile.execution == "sequential" else 0.0
        if vocab and profile.execution == "sequential":
            notes.append(f"... plus {per_1k:.1f} us per 1,000 vocabulary entries = {GENERATE_VOCAB_DISPATCHES_PER_1K:g} x "
                         "the dispatch time, likewise")
    threads = (profile.threads or 1) if profile.execution == "sequential" else 1
    split = threads if vocab > INTRA_OP_GRAIN else 1
    return fixed + per_1k * vocab / 1000 / split, notes


@dataclass
class LanguageModel:
    """A causal LM ready to trace: the module (on meta when built from a config) and its cache layout."""

    module: nn.Module
    name: str
    kind: str                      # "transformers" | "zoo"
    layers: int
    kv_heads: int                  # a zoo decoder's cache; transformers: its first attention layer's (for display:
    head_dim: int                  # the template holds every layer's own)
    windows: tuple[int, ...] = ()  # sliding-window sizes of its layers, if any
    config: Any = None
    vocab: int = 0                 # entries of the logits each step (generate() passes over them)
    # transformers: the cache the model's own two-token prefill returned (cache_template), the pattern of
    # the cache every traced step is given
    template: Any = field(default=None, repr=False)
    # per layer of the template, its state tensors that hold a row per token (DeepSeek V3.2's sparse-attention
    # indexer keys), by their place in _state_tensors(layer): the dim that grows with the context
    per_token: dict[tuple[int, int], int] = field(default_factory=dict)


def load_language_model(model_or_config: Any) -> LanguageModel:
    """An nn.Module, a transformers config (or a config.json path: built on meta, no weights), or a zoo name."""
    if (path := config_json_path(model_or_config)) is not None:
        model_or_config = _as_input_error(transformers_config, path)
    if isinstance(model_or_config, str):
        loaded = load_model(model_or_config)
        return _wrap(loaded.model, loaded.name)
    if isinstance(model_or_config, nn.Module):
        return _wrap(model_or_config, type(model_or_config).__name__)
    if type(model_or_config).__name__.endswith("Config"):
        # an encoder-decoder's causal-LM class (BART's, Whisper's) is its decoder alone, without the encoder
        # and cross-attention generation runs through: refused as having no causal LM
        encoder_decoder = getattr(model_or_config, "is_encoder_decoder", False)
        module = None if encoder_decoder else _as_input_error(build_transformers, model_or_config, CAUSAL_CLASSES)
        if module is None:
            kind = getattr(model_or_config, "model_type", type(model_or_config).__name__)
            what = "is an encoder-decoder" if encoder_decoder else "has no causal language model in transformers"
            raise InputError(f"a {kind!r} config {what}; predict_generation "
                             "covers decoder-only models — for an encoder or an encoder-decoder, time one forward with "
                             "hwcost.predict")
        return _wrap(module, getattr(model_or_config, "model_type", "model"))
    raise InputError(f"predict_generation needs a causal language model (nn.Module), a transformers config or its "
                     f"config.json path, or a zoo name; got {type(model_or_config).__name__}")


def _as_input_error(fn, *args):
    """A loader's UnknownModelError as the InputError predict_generation raises for its argument."""
    try:
        return fn(*args)
    except UnknownModelError as e:
        raise InputError(str(e)) from e


def _wrap(module: nn.Module, name: str) -> LanguageModel:
    cfg = getattr(module, "config", None)
    # a vision-language model (Gemma 3, Llama 4, Qwen2.5-VL) keeps its decoder's sizes in a text config
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    if cfg is not None and hasattr(text, "num_hidden_layers"):
        template = cache_template(module, name)
        keys = [layer.keys for layer in template.layers if _attends(layer)]
        windows = tuple(sorted({w for w in [getattr(text, "sliding_window", None)] if w}))
        heads, width = (keys[0].shape[1], keys[0].shape[-1]) if keys else (0, 0)   # the first attention layer's
        return LanguageModel(module, name, "transformers", len(template.layers), heads, width, windows, cfg,
                             _vocab(module, getattr(text, "vocab_size", 0)), template,
                             _per_token_state(module, name, template))
    zcfg = getattr(module, "cfg", None)
    if zcfg is not None and hasattr(zcfg, "kv_heads"):
        return LanguageModel(module, name, "zoo", zcfg.layers, zcfg.kv_heads, zcfg.dim // zcfg.heads,
                             vocab=_vocab(module, zcfg.vocab_size))
    raise InputError(f"{name} is not a causal language model hwcost knows how to feed a KV cache to: pass a "
                     "transformers causal LM (or its config), or a zoo decoder (llama_tiny, llama_125m)")


def _vocab(module: nn.Module, configured: int) -> int:
    """Entries of the logits: the output head's rows where it has one (a config's vocab_size can
    differ from the head a model was built with), else the configured size."""
    head = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
    return int(getattr(head, "out_features", 0) or configured or 0)


# ------------------------------------------------------------------ the inputs generate() passes


def _ids(batch: int, n: int) -> torch.Tensor:
    return torch.zeros(batch, n, dtype=torch.long)   # token ids 0: values a trace can read


def cache_template(module: nn.Module, name: str, tokens: int = 2) -> Any:
    """The cache a two-token (``tokens``) prefill of the model returns (traced on meta, batch 1): per layer,
    the shapes its keys and values take — whatever the attention (grouped, multi-query as Falcon's, latent as
    DeepSeek's, whose keys are not its heads x head_dim) — and the fixed-size state a recurrent layer keeps
    instead (a state-space or linear-attention layer's convolution and recurrent state)."""
    inputs = {"input_ids": _ids(1, tokens), "attention_mask": torch.ones(1, tokens, dtype=torch.long),
              "use_cache": True}
    tr, _ = run_trace(module, inputs, None, torch.float32, torch.float32, "auto")
    for attr in ("cache", "past_key_values"):   # transformers 5 warns when the old name is read
        cache = getattr(tr.output, attr, None)
        if cache is not None and hasattr(cache, "layers") and len(cache.layers):
            return cache
    raise InputError(f"{name}'s forward returned no cache with layers (use_cache=True): it is not a decoder that "
                     "keeps a KV cache, and predict_generation needs one; time one forward with hwcost.predict instead")


def _attends(layer: Any) -> bool:
    """Does this cache layer hold keys and values (per token), as an attention layer's does?"""
    return isinstance(getattr(layer, "keys", None), torch.Tensor) and layer.keys.dim() == 4


def _state_tensors(layer: Any) -> list[torch.Tensor]:
    """A cache layer's fixed-size state (a recurrent layer's), its keys and values aside."""
    return [t for k, v in vars(layer).items() if k not in ("keys", "values") for t in tensors_in(v) if t.dim() >= 2]


def _per_token_state(module: nn.Module, name: str, template: Any) -> dict[tuple[int, int], int]:
    """Which of the template's state tensors keep a row per token: those a three-token prefill returns one
    longer, in one dim, than the two-token one did (a fixed recurrent state keeps its size)."""
    if not any(_state_tensors(layer) for layer in template.layers):
        return {}
    longer = cache_template(module, name, tokens=3)
    grows = {}
    for i, (two, three) in enumerate(zip(template.layers, longer.layers)):
        for j, (a, b) in enumerate(zip(_state_tensors(two), _state_tensors(three))):
            diff = [d for d in range(a.dim()) if a.dim() == b.dim() and b.shape[d] != a.shape[d]]
            if len(diff) == 1 and b.shape[diff[0]] == a.shape[diff[0]] + 1:
                grows[(i, j)] = diff[0]
    return grows


def _rebatched(t: torch.Tensor, batch: int, dtype: torch.dtype, tokens: int | None = None,
               token_dim: int | None = None) -> torch.Tensor:
    if t.dim() < 2:
        return t
    shape = [batch, *t.shape[1:]]
    if token_dim is not None:
        shape[token_dim] = tokens
    return torch.empty(shape, dtype=dtype if t.is_floating_point() else t.dtype, device="meta")


def cache_of(lm: LanguageModel, batch: int, tokens: int, dtype: torch.dtype) -> Any:
    """The model's own cache holding ``tokens`` tokens (meta tensors): what a decode step reads. Per layer
    of the prefill's cache (cache_template): keys and values of ``tokens`` tokens in the template's heads
    and widths, stored by the cache class's own update (a sliding layer keeps its window); a recurrent
    layer's state as the template holds it, for ``batch`` sequences."""
    if lm.kind == "zoo":
        shape = (batch, lm.kv_heads, tokens, lm.head_dim)
        return [(torch.empty(shape, dtype=dtype, device="meta"), torch.empty(shape, dtype=dtype, device="meta"))
                for _ in range(lm.layers)]
    template = lm.template
    try:
        fresh = type(template)(config=lm.config)
    except TypeError as e:   # a cache class of the model's own that is not built from the config (MiniMax's)
        raise InputError(f"{lm.name}: its cache class {type(template).__name__} is not built from the config as "
                         f"transformers' caches are ({e}), so hwcost cannot lay out its decode cache; time one forward "
                         "at the prompt length with hwcost.predict instead") from e
    if len(fresh.layers) != len(template.layers):
        raise InputError(f"{lm.name}: its cache class builds {len(fresh.layers)} layers from the config where the "
                         f"model's prefill returned {len(template.layers)}; hwcost cannot lay out its decode cache")
    layers = []
    for i, layer in enumerate(template.layers):
        if _attends(layer):
            k, v = layer.keys, layer.values
            fresh.update(torch.empty((batch, k.shape[1], tokens, k.shape[3]), dtype=dtype, device="meta"),
                         torch.empty((batch, v.shape[1], tokens, v.shape[3]), dtype=dtype, device="meta"), i)
        if not _state_tensors(layer):
            layers.append(fresh.layers[i])
            continue
        grown = {id(t): lm.per_token[(i, j)] for j, t in enumerate(_state_tensors(layer)) if (i, j) in lm.per_token}
        kept = map_tensors(layer, lambda t: _rebatched(t, batch, dtype, tokens, grown.get(id(t))))   # state, flags
        if _attends(layer):   # a hybrid layer: its attention part as the cache class grew it
            for attr in ("keys", "values", "cumulative_length"):
                if hasattr(fresh.layers[i], attr):
                    setattr(kept, attr, getattr(fresh.layers[i], attr))
        layers.append(kept)
    cache = copy.copy(template)
    cache.layers = layers
    return cache


def _cache_tensors(lm: LanguageModel, batch: int, tokens: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """A cache of ``tokens`` tokens (cache_of), as (its keys and values — a sliding layer keeps its window —,
    its recurrent layers' fixed state)."""
    cache = cache_of(lm, batch, tokens, torch.float16)
    if isinstance(cache, list):   # a zoo decoder's (keys, values) per layer
        return [t for kv in cache for t in kv], []
    kv = [t for layer in cache.layers if _attends(layer) for t in (layer.keys, layer.values)]
    state = []
    for i, layer in enumerate(cache.layers):   # a state tensor with a row per token counts with the keys
        for j, t in enumerate(_state_tensors(layer)):
            (kv if (i, j) in lm.per_token else state).append(t)
    return kv, state


def cache_parts(lm: LanguageModel, batch: int, tokens: int) -> tuple[int, int]:
    """Elements a cache of ``tokens`` tokens holds, read from the cache object: (keys and values, state)."""
    kv, state = _cache_tensors(lm, batch, tokens)
    return sum(t.numel() for t in kv), sum(t.numel() for t in state)


def cache_elements(lm: LanguageModel, batch: int, tokens: int) -> int:
    return sum(cache_parts(lm, batch, tokens))


def kv_shapes(lm: LanguageModel, batch: int, tokens: int) -> set[tuple[int, ...]]:
    """The shapes of the keys and values a cache of ``tokens`` tokens holds (what a KV dtype changes)."""
    return {tuple(t.shape) for t in _cache_tensors(lm, batch, tokens)[0]}


def prefill_inputs(lm: LanguageModel, batch: int, prompt: int) -> dict:
    ids = _ids(batch, prompt)
    if lm.kind == "zoo":
        return {"input_ids": ids, "use_cache": True, "logits_to_keep": 1}
    return {"input_ids": ids, "attention_mask": torch.ones(batch, prompt, dtype=torch.long), "use_cache": True,
            "logits_to_keep": 1}


def decode_inputs(lm: LanguageModel, batch: int, context: int, dtype: torch.dtype) -> dict:
    """One new token over a cache of ``context`` tokens."""
    past = cache_of(lm, batch, context, dtype)
    if lm.kind == "zoo":
        return {"input_ids": _ids(batch, 1), "past_key_values": past, "use_cache": True}
    mask = torch.ones(batch, context + 1, dtype=torch.long)
    step = _prepared_step(lm.module, _ids(batch, context + 1), mask, past)
    if step is None:
        step = {"input_ids": _ids(batch, 1), "attention_mask": mask, _cache_argument(lm.module): past}
    return {**step, "use_cache": True, "logits_to_keep": 1}


def _prepared_step(module: nn.Module, ids: torch.Tensor, mask: torch.Tensor, cache: Any) -> dict | None:
    """The forward's inputs for one decode step as generate() makes them: the model's own
    prepare_inputs_for_generation given every token so far, which keeps the last (a state-space model's
    also drops the mask it would otherwise broadcast over the whole context). None where the model has
    none or it takes arguments this transformers version does not name alike (the caller builds the inputs)."""
    import inspect

    prepare = getattr(module, "prepare_inputs_for_generation", None)
    if prepare is None:
        return None
    params = set()   # what it and the versions it hands **kwargs on to (up the class tree) name
    for klass in type(module).__mro__:
        if "prepare_inputs_for_generation" in vars(klass):
            params |= set(inspect.signature(vars(klass)["prepare_inputs_for_generation"]).parameters)
    given = {"attention_mask": mask, "use_cache": True, "is_first_iteration": False, "next_sequence_length": 1,
             "cache_position": torch.tensor([ids.shape[1] - 1])}
    given[_cache_argument(module)] = cache
    try:
        out = prepare(ids, **{k: v for k, v in given.items() if k in params})
    except Exception:   # noqa: BLE001 - an interface this version does not share: the plain step instead
        return None
    step = {k: v for k, v in dict(out).items() if v is not None and k not in ("use_cache", "logits_to_keep")}
    first = step.get("input_ids")
    return step if isinstance(first, torch.Tensor) and first.shape[-1] == 1 else None


def _cache_argument(module: nn.Module) -> str:
    """transformers renamed ``past_key_values`` to ``cache`` (5.x); pass whichever the model takes."""
    import inspect

    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


# ------------------------------------------------------------------ weight and KV formats


def _reformatted(a: Analysis, weight_dtype: str | None, kv_factor: float, kv_shapes: set) -> Analysis:
    """The same analysis with the linear layers' weights in a weight-only format (bytes read of their
    products, and their storage) and the KV cache's tensors at another element size (bytes of every op
    reading or writing a tensor of a cache shape). MACs and FLOPs do not change."""
    act = itemsize(parse_dtype(a.dtype))
    wfactor = WEIGHT_BYTES[weight_dtype] / act if weight_dtype else 1.0
    new_of: dict[int, Any] = {}
    for c in a.ops:
        read, written, wbytes = c.bytes_read, c.bytes_written, c.weight_bytes
        if wfactor != 1.0 and c.family == "matmul" and wbytes:
            read -= round(wbytes * (1 - wfactor))
            wbytes = round(wbytes * wfactor)
        if kv_factor != 1.0:
            rec = c.record
            read -= round(sum(t.read_bytes for t in rec.inputs if t.shape in kv_shapes) * (1 - kv_factor))
            written -= round(sum(t.nbytes for t in rec.outputs if t.shape in kv_shapes) * (1 - kv_factor))
        new_of[id(c)] = dataclasses.replace(c, bytes_read=read, bytes_written=written, weight_bytes=wbytes)
    layers = []
    for row in a.layers:
        ops = [new_of[id(c)] for c in row.ops]
        storage = round(row.storage_bytes * wfactor) if wfactor != 1.0 and row.type == "Linear" else row.storage_bytes
        layers.append(dataclasses.replace(row, ops=ops, bytes_read=sum(c.bytes_read for c in ops),
                                          bytes_written=sum(c.bytes_written for c in ops), storage_bytes=storage))
    total = dataclasses.replace(a.total, storage_bytes=a.total.storage_bytes - sum(
        r.storage_bytes - n.storage_bytes for r, n in zip(a.layers, layers)),
        bytes_read=sum(r.bytes_read for r in layers), bytes_written=sum(r.bytes_written for r in layers))
    return dataclasses.replace(a, ops=[new_of[id(c)] for c in a.ops], layers=layers, total=total)


# ------------------------------------------------------------------ the prediction


@dataclass
class GenerationPrediction:
    model: str
    device: DeviceProfile
    prompt_tokens: int
    new_tokens: int
    batch_size: int
    dtype: str
    weight_dtype: str
    kv_dtype: str
    prefill: Prediction
    steps: dict[int, Prediction]          # decode step predictions at the traced context lengths
    step_overhead_ms: float               # generate()'s own time per step (sampling, bookkeeping)
    call_overhead_ms: float               # ... and per call, before the prefill (config, processors, cache)
    weight_bytes: int
    kv_cache_bytes: int                   # at the final context length
    activation_bytes: int                 # the peak of a step's live activations (cache aside)
    assumptions: list[str] = field(default_factory=list)
    lm: LanguageModel | None = field(default=None, repr=False)

    # -- time
    def decode_ms_at(self, context_len: int) -> float:
        """Latency of one decode step over a cache of ``context_len`` tokens (step overhead included)."""
        return _interp(self.steps, context_len, lambda p: p.latency_ms) + self.step_overhead_ms

    def _decode_sum(self, value) -> float:
        lengths = range(self.prompt_tokens, self.prompt_tokens + self.new_tokens - 1)
        return sum(_interp(self.steps, n, value) for n in lengths)

    @property
    def ttft_ms(self) -> float:
        """generate()'s setup, the prefill of the prompt, and the step that turns its logits into the
        first token."""
        return self.call_overhead_ms + self.prefill.latency_ms + self.step_overhead_ms

    @property
    def decode_ms(self) -> float:
        return self._decode_sum(lambda p: p.latency_ms) + (self.new_tokens - 1) * self.step_overhead_ms

    @property
    def decode_ms_per_token(self) -> float:
        return self.decode_ms / (self.new_tokens - 1) if self.new_tokens > 1 else 0.0

    @property
    def total_ms(self) -> float:
        return self.ttft_ms + self.decode_ms

    @property
    def tokens_per_s(self) -> float:
        """New tokens per second of the whole generation, prefill included (per sequence x batch)."""
        return 1000.0 * self.new_tokens * self.batch_size / self.total_ms

    @property
    def decode_tokens_per_s(self) -> float:
        return 1000.0 * self.batch_size / self.decode_ms_per_token if self.new_tokens > 1 else 0.0

    # -- energy
    @property
    def energy_mj(self) -> float | None:
        if self.prefill.energy_mj is None:
            return None
        idle_w = self.device.power_idle_w or 0.0   # the device idles while generate()'s Python runs
        return (self.prefill.energy_mj + idle_w * (self.call_overhead_ms + self.new_tokens * self.step_overhead_ms)
                + self._decode_sum(lambda p: p.energy_mj))

    @property
    def energy_mj_per_token(self) -> float | None:
        e = self.energy_mj
        return None if e is None else e / (self.new_tokens * self.batch_size)

    # -- memory
    @property
    def memory(self) -> MemoryFit:
        return memory_fit(self.device, {"weights": self.weight_bytes, "KV cache": self.kv_cache_bytes,
                                        "activations": self.activation_bytes})

    @property
    def peak_memory_bytes(self) -> int:
        return self.memory.needed_bytes

    @property
    def fits(self) -> bool | None:
        return self.memory.fits

    @property
    def warnings(self) -> list[str]:
        out = []
        if (w := self.memory.warning(self.device.name)) is not None:
            out.append(w + f" at a context of {self.prompt_tokens + self.new_tokens} tokens")
        step_lines: dict[str, list[int]] = {}   # one line for the decode steps, naming every traced context
        for ctx, p in self.steps.items():
            for w in p.warnings:
                if not w.startswith("does not fit"):
                    step_lines.setdefault(w.replace(f"decode@{ctx}", "decode"), []).append(ctx)
        out.extend(w for w in self.prefill.warnings if not w.startswith("does not fit"))
        out.extend(f"decode steps: {w}" + (
            f" (traced at {', '.join(map(str, ctxs))} tokens of context)" if len(ctxs) > 1 else "")
            for w, ctxs in step_lines.items())
        return out

    def decode_step(self, context_len: int) -> Prediction:
        """The per-layer prediction of one decode step over ``context_len`` cached tokens (traced exactly)."""
        return _decode_prediction(self.lm, self.device, self.batch_size, context_len, self.dtype, self.weight_dtype,
                                  self.kv_dtype)

    def summary(self) -> str:
        return report.generation_summary(self)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "device": self.device.name, "prompt_tokens": self.prompt_tokens,
                "new_tokens": self.new_tokens, "batch_size": self.batch_size, "dtype": self.dtype,
                "weight_dtype": self.weight_dtype, "kv_dtype": self.kv_dtype, "ttft_ms": self.ttft_ms,
                "decode_ms_per_token": self.decode_ms_per_token, "total_ms": self.total_ms,
                "tokens_per_s": self.tokens_per_s, "decode_tokens_per_s": self.decode_tokens_per_s,
                "energy_mj": self.energy_mj, "energy_mj_per_token": self.energy_mj_per_token,
                "weight_bytes": self.weight_bytes, "kv_cache_bytes": self.kv_cache_bytes,
                "peak_memory_bytes": self.peak_memory_bytes, "fits": self.fits,
                "shortfall_bytes": self.memory.shortfall_bytes, "step_overhead_ms": self.step_overhead_ms,
                "call_overhead_ms": self.call_overhead_ms,
                "decode_ms_at": {str(n): self.decode_ms_at(n) for n in sorted(self.steps)},
                "assumptions": self.assumptions, "warnings": self.warnings}


def _interp(steps: dict[int, Prediction], n: int, value) -> float:
    """Linear between the traced context lengths (exact at them), flat beyond the ends."""
    xs = sorted(steps)
    if n <= xs[0]:
        return value(steps[xs[0]])
    if n >= xs[-1]:
        return value(steps[xs[-1]])
    hi = next(x for x in xs if x >= n)
    lo = max(x for x in xs if x <= n)
    if hi == lo:
        return value(steps[lo])
    f = (n - lo) / (hi - lo)
    return value(steps[lo]) * (1 - f) + value(steps[hi]) * f


def traced_lengths(lm: LanguageModel, first: int, last: int) -> list[int]:
    """Context lengths to trace a decode step at: the ends, the middle, and each window's edge inside."""
    points = {first, last, (first + last) // 2}
    for w in lm.windows:
        points |= {x for x in (w - 1, w) if first < x < last}
    return sorted(points)


def _decode_prediction(lm: LanguageModel, device: DeviceProfile, batch: int, context: int, dtype: str,
                       weight_dtype: str | None, kv_dtype: str) -> Prediction:
    a = analyze(lm.module, decode_inputs(lm, batch, context, parse_dtype(dtype)), dtype=dtype,
                model_name=f"{lm.name} decode@{context}")
    return predict_analysis(_reformat(a, lm, batch, (context, context + 1), dtype, weight_dtype, kv_dtype), device)


def _reformat(a: Analysis, lm: LanguageModel, batch: int, cache_lengths: tuple[int, ...], dtype: str,
              weight_dtype: str | None, kv_dtype: str) -> Analysis:
    """``a`` in the requested weight and KV formats; the cache's tensors are those of ``cache_lengths`` tokens."""
    kv_factor = itemsize(parse_dtype(kv_dtype)) / itemsize(parse_dtype(dtype))
    shapes = {s for n in cache_lengths for s in kv_shapes(lm, batch, n)} if kv_factor != 1.0 else set()
    return _reformatted(a, weight_dtype if weight_dtype != dtype else None, kv_factor, shapes)


@materialized_once()   # a model traced on real tensors (weight routing) gets its random weights once
def predict_generation(
    model_or_config: Any,
    prompt_tokens: int = 512,
    new_tokens: int = 128,
    batch_size: int = 1,
    device: str | DeviceProfile = "raspberry-pi-5",
    dtype: str = "float32",
    weight_dtype: str | None = None,
    kv_dtype: str | None = None,
) -> GenerationPrediction:
    """Time to first token, per-token decode, tokens/s, energy per token, memory and fit of generating
    ``new_tokens`` after a ``prompt_tokens`` prompt, greedy, with a KV cache (see the module's docstring).

    ``dtype``: activations (and weights unless ``weight_dtype``: "int8" or "int4", weight-only); ``kv_dtype``:
    the cache's element type (default ``dtype``)."""
    if prompt_tokens < 1 or new_tokens < 1 or batch_size < 1:
        raise InputError("prompt_tokens, new_tokens and batch_size must be at least 1")
    if weight_dtype not in (None, dtype, *WEIGHT_BYTES):
        raise InputError(f"weight_dtype must be one of {', '.join(WEIGHT_BYTES)} (weight-only) or the model dtype, "
                         f"got {weight_dtype!r}")
    profile = load_device(device)
    lm = load_language_model(model_or_config)
    dtype = dtype_name(parse_dtype(dtype))
    kv_dtype = dtype_name(parse_dtype(kv_dtype or dtype))
    pre = analyze(lm.module, prefill_inputs(lm, batch_size, prompt_tokens), dtype=dtype,
                  model_name=f"{lm.name} prefill")
    prefill = predict_analysis(_reformat(pre, lm, batch_size, (prompt_tokens,), dtype, weight_dtype, kv_dtype), profile)
    last = prompt_tokens + new_tokens - 2            # the cache the last decode step reads
    steps = {n: _decode_prediction(lm, profile, batch_size, n, dtype, weight_dtype, kv_dtype)
             for n in (traced_lengths(lm, prompt_tokens, max(last, prompt_tokens)) if new_tokens > 1 else [prompt_tokens])}
    kv_isz = itemsize(parse_dtype(kv_dtype))
    act_isz = itemsize(parse_dtype(dtype))
    final = prompt_tokens + new_tokens
    kv_elements, state_elements = cache_parts(lm, batch_size, final)
    kv_bytes = kv_elements * kv_isz + state_elements * act_isz   # a recurrent state stays in the model's dtype
    weight_bytes = prefill.analysis.total.storage_bytes + prefill.analysis.total.buffer_bytes
    # a step's live activations, less the cache it holds (counted once, at the cache dtype)
    last_step = steps[max(steps)].analysis.total
    acts = max(prefill.analysis.total.peak_activation_bytes - cache_elements(lm, batch_size, prompt_tokens) * act_isz,
               last_step.peak_activation_bytes - cache_elements(lm, batch_size, max(steps) + 1) * act_isz, 0)
    overhead_us, step_notes = generate_step_us(profile, lm.vocab * batch_size)   # logits of every sequence
    call_us = profile.generate_call_us if profile.generate_call_us is not None else \
        GENERATE_CALL_DISPATCHES * profile.host_per_op_us
    assumptions = [f"greedy decoding with a KV cache ({'the model' if lm.kind == 'zoo' else 'transformers'}'s own "
                   "cache class), exactly new_tokens tokens (min_new_tokens = max_new_tokens); no speculative "
                   "decoding, paged attention or batching scheduler"]
    assumptions += step_notes
    if profile.generate_call_us is None:
        assumptions.append(f"generate()'s setup per call: {call_us:,.0f} us = {GENERATE_CALL_DISPATCHES:g} x the same "
                           "time, likewise")
    if weight_dtype in WEIGHT_BYTES:
        assumptions.append(f"{weight_dtype} weights (linear layers, weight-only): {WEIGHT_BYTES[weight_dtype]:.4g} bytes "
                           f"each with their scales, arithmetic in {dtype} after dequantization in the kernel; a device "
                           f"without such kernels runs slower than this")
    if kv_dtype != dtype:
        assumptions.append(f"KV cache in {kv_dtype}: its bytes change, its arithmetic stays {dtype}")
    if state_elements:
        state_mb = state_elements * act_isz / 2**20
        assumptions.append(f"the KV cache figure holds a fixed recurrent state of {state_mb:,.2f} MB (state-space or "
                           f"linear-attention layers), kept in {dtype} whatever the KV cache's dtype")
    return GenerationPrediction(lm.name, profile, prompt_tokens, new_tokens, batch_size, dtype, weight_dtype or dtype,
                                kv_dtype, prefill, steps, overhead_us * 1e-3, call_us * 1e-3, weight_bytes, kv_bytes,
                                acts, assumptions, lm)
