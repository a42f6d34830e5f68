"""Real-world corpus: transformers architectures from tiny configs, called with the inputs users pass.

Each must analyze, leave the model and its inputs untouched, have layer rows that add up, and count
conv/matmul/attention MACs equal to FlopCounterMode's total / 2 on a real CPU forward with the math
attention backend. Every text model gets a padded attention mask; decoders also get a decode step
over the cache their prefill returned. No skip lists.
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch

import hwcost
from hwcost.formulas import PRODUCT_FAMILIES

transformers = pytest.importorskip("transformers")
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

B, L, VOCAB = 2, 8, 96

# small widths shared by most configs (names as transformers' configs spell them)
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=VOCAB)
DECODER = dict(TINY, num_key_value_heads=2, max_position_embeddings=64)


@dataclass
class Case:
    model_type: str
    kind: str                       # encoder | decoder | moe | seq2seq | vision | speech | multimodal
    config: dict[str, Any]
    auto: str = "AutoModel"
    inputs: Callable[[Any], dict[str, Any]] | None = None
    moe_reference: Callable[[Any, int], int] | None = None   # MACs FlopCounterMode cannot see, by hand


def _ids() -> torch.Tensor:
    return torch.randint(3, VOCAB, (B, L), generator=torch.Generator().manual_seed(1))


def _mask(left: bool) -> torch.Tensor:
    m = torch.ones(B, L, dtype=torch.long)
    if left:
        m[1, :3] = 0      # decoders pad on the left, as generate() expects
    else:
        m[1, -3:] = 0
    return m


def text(cfg) -> dict[str, Any]:
    return {"input_ids": _ids(), "attention_mask": _mask(left=False)}


def causal(cfg) -> dict[str, Any]:
    return {"input_ids": _ids(), "attention_mask": _mask(left=True)}


def seq2seq(cfg) -> dict[str, Any]:
    return {"input_ids": _ids(), "attention_mask": _mask(left=False), "decoder_input_ids": _ids()[:, :5]}


def pixels(size: int = 32, channels: int = 3) -> Callable[[Any], dict[str, Any]]:
    return lambda cfg: {"pixel_values": torch.randn(B, channels, size, size)}


def audio(cfg) -> dict[str, Any]:
    mask = torch.ones(B, 1600, dtype=torch.long)
    mask[1, -400:] = 0
    return {"input_values": torch.randn(B, 1600), "attention_mask": mask}


def whisper(cfg) -> dict[str, Any]:
    return {"input_features": torch.randn(B, cfg.num_mel_bins, 2 * cfg.max_source_positions),
            "decoder_input_ids": _ids()[:, :4], "decoder_attention_mask": torch.ones(B, 4, dtype=torch.long)}


def clip_like(cfg) -> dict[str, Any]:
    return {"input_ids": _ids(), "attention_mask": _mask(left=False), "pixel_values": torch.randn(B, 3, 32, 32)}


def siglip(cfg) -> dict[str, Any]:
    return {"input_ids": _ids(), "pixel_values": torch.randn(B, 3, 32, 32)}


def routed_expert_macs(experts_per_token: str, hidden: str, ffn: str):
    """Tokens x top-k x one expert's gated MLP (3 matrices) per layer (a shared expert is no `.experts`
    module: FlopCounterMode counts it)."""
    def macs(cfg, tokens: int) -> int:
        expert = 3 * getattr(cfg, hidden) * getattr(cfg, ffn)
        return cfg.num_hidden_layers * tokens * getattr(cfg, experts_per_token) * expert
    return macs


VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32,
           patch_size=8)
CLIP_TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 vocab_size=VOCAB, max_position_embeddings=32)
CLIP_VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                   image_size=32, patch_size=8)
MOE = dict(DECODER, num_local_experts=4, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=48)

CASES = [
    # text encoders
    Case("bert", "encoder", TINY, inputs=text),
    Case("roberta", "encoder", TINY, inputs=text),
    Case("xlm-roberta", "encoder", TINY, inputs=text),
    Case("distilbert", "encoder", dict(dim=32, n_layers=2, n_heads=4, hidden_dim=64, vocab_size=VOCAB), inputs=text),
    Case("albert", "encoder", dict(TINY, embedding_size=16), inputs=text),
    Case("electra", "encoder", dict(TINY, embedding_size=16), inputs=text),
    Case("mpnet", "encoder", TINY, inputs=text),
    Case("modernbert", "encoder", dict(TINY, global_attn_every_n_layers=2, local_attention=4, pad_token_id=0),
         inputs=text),
    Case("deberta-v2", "encoder", TINY, inputs=text),
    Case("megatron-bert", "encoder", TINY, inputs=text),
    # decoders
    Case("gpt2", "decoder", dict(n_embd=32, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=64),
         "AutoModelForCausalLM", causal),
    Case("llama", "decoder", DECODER, "AutoModelForCausalLM", causal),
    Case("mistral", "decoder", dict(DECODER, sliding_window=4), "AutoModelForCausalLM", causal),
    Case("qwen2", "decoder", DECODER, "AutoModelForCausalLM", causal),
    Case("qwen3", "decoder", dict(DECODER, head_dim=8), "AutoModelForCausalLM", causal),
    Case("gemma", "decoder", dict(DECODER, head_dim=8), "AutoModelForCausalLM", causal),
    Case("gemma2", "decoder", dict(DECODER, head_dim=8, sliding_window=4), "AutoModelForCausalLM", causal),
    Case("gemma3_text", "decoder", dict(DECODER, head_dim=8, sliding_window=4), "AutoModelForCausalLM", causal),
    Case("phi", "decoder", DECODER, "AutoModelForCausalLM", causal),
    Case("phi3", "decoder", dict(DECODER, pad_token_id=0), "AutoModelForCausalLM", causal),
    Case("opt", "decoder", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64,
                                word_embed_proj_dim=32, vocab_size=VOCAB, max_position_embeddings=64),
         "AutoModelForCausalLM", causal),
    Case("gpt_neox", "decoder", TINY, "AutoModelForCausalLM", causal),
    Case("falcon", "decoder", dict(TINY, new_decoder_architecture=True, num_kv_heads=2), "AutoModelForCausalLM",
         causal),
    Case("bloom", "decoder", dict(hidden_size=32, n_layer=2, n_head=4, vocab_size=VOCAB), "AutoModelForCausalLM",
         causal),
    Case("starcoder2", "decoder", DECODER, "AutoModelForCausalLM", causal),
    Case("olmo2", "decoder", DECODER, "AutoModelForCausalLM", causal),
    Case("stablelm", "decoder", DECODER, "AutoModelForCausalLM", causal),
    Case("granite", "decoder", DECODER, "AutoModelForCausalLM", causal),
    Case("gpt_bigcode", "decoder", dict(n_embd=32, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=64),
         "AutoModelForCausalLM", causal),
    # mixture of experts
    Case("mixtral", "moe", MOE, "AutoModelForCausalLM", causal,
         routed_expert_macs("num_experts_per_tok", "hidden_size", "intermediate_size")),
    Case("qwen2_moe", "moe", dict(MOE, shared_expert_intermediate_size=40), "AutoModelForCausalLM", causal,
         routed_expert_macs("num_experts_per_tok", "hidden_size", "moe_intermediate_size")),
    Case("qwen3_moe", "moe", dict(MOE, head_dim=8), "AutoModelForCausalLM", causal,
         routed_expert_macs("num_experts_per_tok", "hidden_size", "moe_intermediate_size")),
    # the same routing run as a loop over experts: which experts run depends on the router's values
    Case("mixtral", "moe", dict(MOE, experts_implementation="eager"), "AutoModelForCausalLM", causal,
         routed_expert_macs("num_experts_per_tok", "hidden_size", "intermediate_size")),
    Case("olmoe", "moe", dict(MOE, intermediate_size=48), "AutoModelForCausalLM", causal,
         routed_expert_macs("num_experts_per_tok", "hidden_size", "intermediate_size")),
    # encoder-decoders
    Case("t5", "seq2seq", dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, vocab_size=VOCAB),
         inputs=seq2seq),
    Case("bart", "seq2seq", dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                                 decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                 vocab_size=VOCAB, max_position_embeddings=64), inputs=seq2seq),
    Case("pegasus", "seq2seq", dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                                    decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                    vocab_size=VOCAB, max_position_embeddings=64), inputs=seq2seq),
    # vision
    Case("vit", "vision", VIT, inputs=pixels()),
    Case("deit", "vision", VIT, inputs=pixels()),
    Case("dinov2", "vision", VIT, inputs=pixels()),
    Case("swin", "vision", dict(embed_dim=16, depths=[1, 1], num_heads=[2, 4], image_size=32, patch_size=4,
                                window_size=4), inputs=pixels()),
    Case("convnext", "vision", dict(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2), inputs=pixels()),
    Case("resnet", "vision", dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]), inputs=pixels()),
    Case("mobilevit", "vision", dict(image_size=32, hidden_sizes=[16, 24, 32], neck_hidden_sizes=[8, 8, 16, 16, 24, 24, 48]),
         inputs=pixels()),
    Case("efficientnet", "vision", dict(image_size=32, width_coefficient=0.25, depth_coefficient=0.2,
                                        hidden_dim=320), inputs=pixels()),
    Case("mobilenet_v2", "vision", dict(image_size=32, depth_multiplier=0.25), inputs=pixels()),
    Case("segformer", "vision", dict(hidden_sizes=[8, 16], depths=[1, 1], num_encoder_blocks=2,
                                     num_attention_heads=[1, 2], sr_ratios=[2, 1], decoder_hidden_size=16,
                                     strides=[4, 2], patch_sizes=[7, 3], mlp_ratios=[2, 2]), inputs=pixels()),
    # speech
    Case("wav2vec2", "speech", dict(TINY, conv_dim=[16, 16], conv_stride=[5, 2], conv_kernel=[10, 3],
                                    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                                    feat_extract_norm="layer"), inputs=audio),
    Case("hubert", "speech", dict(TINY, conv_dim=[16, 16], conv_stride=[5, 2], conv_kernel=[10, 3],
                                  num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                                  feat_extract_norm="layer"), inputs=audio),
    Case("whisper", "speech", dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                                   decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                   vocab_size=VOCAB, num_mel_bins=16, max_source_positions=16,
                                   max_target_positions=16, pad_token_id=0, bos_token_id=1,
                                   eos_token_id=2, decoder_start_token_id=1), inputs=whisper),
    # multimodal
    Case("clip", "multimodal", dict(text_config=CLIP_TEXT, vision_config=CLIP_VISION, projection_dim=16),
         inputs=clip_like),
    Case("siglip", "multimodal", dict(text_config=CLIP_TEXT, vision_config=CLIP_VISION), inputs=siglip),
]


def build(case: Case):
    config = dict(case.config)
    extra = {k: config.pop(k) for k in ("experts_implementation",) if k in config}
    cfg = transformers.AutoConfig.for_model(case.model_type, **config)
    torch.manual_seed(0)
    model = getattr(transformers, case.auto).from_config(cfg, **extra).eval()
    return cfg, model


def reference_macs(model, inputs: dict[str, Any]) -> int:
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        model(**copy.deepcopy(inputs))
    return fc.get_total_flops() // 2


def product_macs(a: hwcost.Analysis) -> int:
    return sum(c.macs for c in a.ops if c.family in PRODUCT_FAMILIES)


def fingerprint(model) -> list[tuple]:
    return [(n, p.device, p.dtype, p.data_ptr(), float(p.detach().double().sum()))
            for n, p in model.state_dict(keep_vars=True).items()]


def check(model, inputs: dict[str, Any], ref_macs: int) -> hwcost.Analysis:
    before = fingerprint(model)
    training = model.training
    a = hwcost.analyze(model, inputs)
    assert fingerprint(model) == before and model.training == training   # the model is untouched
    rows = a.layers
    for f in ("macs", "flops", "bytes_read", "bytes_written"):
        assert sum(getattr(r, f) for r in rows) == getattr(a.total, f), f
    assert a.total.macs > 0 and a.trace_mode in ("meta", "values")
    assert product_macs(a) == ref_macs, (product_macs(a), ref_macs, a.trace_mode, a.unsupported)
    return a


def cache_key(model) -> str:
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def case_id(c: Case) -> str:
    return c.model_type + ("-" + c.config["experts_implementation"] if "experts_implementation" in c.config else "")


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_corpus_model(case: Case):
    cfg, model = build(case)
    inputs = case.inputs(cfg)
    prefill = check(model, inputs, reference(case, cfg, model, inputs, tokens=B * L))
    if case.kind in ("decoder", "moe"):
        with torch.no_grad():
            out = model(**inputs, use_cache=True)
        cache = getattr(out, "past_key_values", None) or getattr(out, "cache", None)
        length = cache.get_seq_length()
        step = {"input_ids": _ids()[:, :1],
                "attention_mask": torch.cat([inputs["attention_mask"], torch.ones(B, 1, dtype=torch.long)], 1),
                cache_key(model): cache}
        decode = check(model, step, reference(case, cfg, model, step, tokens=B))
        assert cache.get_seq_length() == length        # the user's cache is never mutated
        assert 0 < decode.total.macs < prefill.total.macs


def reference(case: Case, cfg, model, inputs: dict[str, Any], tokens: int) -> int:
    """FlopCounterMode's MACs; for MoE, those outside the experts plus the routed experts by hand
    (tokens x top-k x one expert), since FlopCounterMode counts no grouped matmul."""
    if case.moe_reference is None:
        return reference_macs(model, inputs)
    experts = [m for n, m in model.named_modules() if n.endswith(".experts")]
    assert experts, "an MoE case must have expert modules"
    inside: list[FlopCounterMode] = []    # FlopCounterMode clears its counts when entered: one per call

    def enter(*_):
        inside.append(FlopCounterMode(display=False))
        inside[-1].__enter__()

    def leave(*_):
        inside[-1].__exit__(None, None, None)

    handles = [m.register_forward_pre_hook(enter) for m in experts]
    handles += [m.register_forward_hook(leave) for m in experts]
    try:
        total = reference_macs(model, inputs)
    finally:
        for h in handles:
            h.remove()
    return total - sum(m.get_total_flops() for m in inside) // 2 + case.moe_reference(cfg, tokens)


def test_corpus_covers_every_kind():
    kinds = {c.kind for c in CASES}
    assert {"encoder", "decoder", "moe", "seq2seq", "vision", "speech", "multimodal"} <= kinds
    assert len(CASES) >= 40
