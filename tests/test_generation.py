"""LLM generation cost: KV-cache bytes and decode MACs by hand (GQA, sliding window), interpolation equal
to full traces, memory fit, the CLI."""
import json

import pytest
import torch
import yaml

from hwcost.cli import main
from hwcost.devices import parse_profile
from hwcost.generation import (_interp, analyze, cache_elements, cache_parts, decode_inputs, load_language_model,
                               predict_generation)
from hwcost.zoo.transformer import Decoder, DecoderConfig

SMALL = DecoderConfig(vocab_size=100, dim=64, layers=2, heads=4, kv_heads=2, ffn_dim=128)


def _decode_macs_by_hand(cfg: DecoderConfig, context: int, batch: int = 1) -> int:
    d, hd = cfg.dim, cfg.dim // cfg.heads
    per_layer = d * d + 2 * d * cfg.kv_heads * hd + d * d + 3 * d * cfg.ffn_dim   # q, k, v, o, gate/up/down
    attention = cfg.heads * 1 * (context + 1) * (hd + hd)                          # one query over the cache + itself
    return batch * (cfg.layers * (per_layer + attention) + d * cfg.vocab_size)


def test_gqa_kv_bytes_and_decode_macs_by_hand():
    g = predict_generation(Decoder(SMALL), prompt_tokens=20, new_tokens=9, batch_size=2, device="h100",
                           dtype="float16")
    # 2 layers x (k, v) x batch 2 x 2 KV heads x 29 tokens x head_dim 16 x 2 bytes
    assert g.kv_cache_bytes == 2 * 2 * 2 * 2 * 29 * 16 * 2
    for n, step in g.steps.items():
        assert step.analysis.total.macs == _decode_macs_by_hand(SMALL, n, batch=2)
    assert sorted(g.steps) == [20, 23, 27]              # first, middle and last step's cache
    assert g.decode_ms_per_token > 0 and g.ttft_ms > g.step_overhead_ms


def test_interpolated_steps_equal_full_traces():
    lm = load_language_model(Decoder(SMALL))
    g = predict_generation(lm.module, prompt_tokens=10, new_tokens=40, device="raspberry-pi-5")
    for n in (11, 17, 30, 48):
        traced = analyze(lm.module, decode_inputs(lm, 1, n, torch.float32)).total.macs
        assert _interp(g.steps, n, lambda p: p.analysis.total.macs) == pytest.approx(traced, rel=1e-12)


def _mistral(window: int = 8):
    transformers = pytest.importorskip("transformers")
    return transformers.MistralConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, sliding_window=window,
                                      max_position_embeddings=256)


def test_sliding_window_kv_bytes_and_decode_macs_by_hand():
    cfg = _mistral(8)
    lm = load_language_model(cfg)
    # the cache class keeps window - 1 tokens per sliding layer: 2 layers x (k, v) x 2 heads x 7 x 16
    assert cache_elements(lm, 1, 40) == 2 * 2 * 2 * 7 * 16
    assert cache_elements(lm, 1, 5) == 2 * 2 * 2 * 5 * 16
    g = predict_generation(cfg, prompt_tokens=4, new_tokens=20, device="h100", dtype="float16")
    assert 7 in g.steps                                 # the window's edge (window - 1 cached tokens) is traced
    attn = {}
    for n, step in g.steps.items():
        attn[n] = sum(c.macs for c in step.analysis.ops if c.family == "attention")
    # one query over min(n, window - 1) cached tokens and itself, 4 heads x (16 + 16) per key
    assert all(attn[n] == 2 * 4 * (min(n, 7) + 1) * 32 for n in attn)
    for n in (5, 12, 21):                               # interpolation stays exact past the window's edge
        traced = analyze(lm.module, decode_inputs(lm, 1, n, torch.float16), dtype="float16").total.macs
        assert _interp(g.steps, n, lambda p: p.analysis.total.macs) == traced


def test_a_70b_model_does_not_fit_an_8gb_board():
    g = predict_generation("llama2_70b", prompt_tokens=16, new_tokens=4, device="jetson-orin-nano", dtype="float16")
    assert g.fits is False and g.memory.shortfall_bytes > 100e9
    assert "DOES NOT FIT (" in g.summary() and "GB short" in g.summary()
    assert any(w.startswith("does not fit") for w in g.warnings)


def _board(capacity_gb: float):
    return parse_profile(yaml.safe_dump({
        "name": "small-board", "kind": "cpu", "description": "x", "execution": "sequential",
        "compute": {"matrix_tflops": {"float32": 0.1}}, "memory": {"bandwidth_gbps": 10.0, "capacity_gb": capacity_gb},
        "overhead_us": {"host_per_op": 2.0}, "sources": {"compute": "x", "memory": "x", "overhead_us": "x"}}))


def test_weights_fit_but_a_long_context_does_not():
    cfg = DecoderConfig(vocab_size=1000, dim=256, layers=4, heads=4, kv_heads=4, ffn_dim=512)
    board = _board(0.1)                                  # 100 MB
    short = predict_generation(Decoder(cfg), prompt_tokens=64, new_tokens=8, device=board)
    assert short.fits is True and short.weight_bytes < 0.1e9
    long = predict_generation(Decoder(cfg), prompt_tokens=12000, new_tokens=8, device=board)
    # KV: 4 layers x (k, v) x 4 heads x 12008 tokens x 64 x 4 bytes = 98 MB on top of ~8 MB of weights
    assert long.kv_cache_bytes == 4 * 2 * 4 * 12008 * 64 * 4
    assert long.fits is False and long.weight_bytes == short.weight_bytes


def test_weight_only_and_kv_formats_change_bytes_not_macs():
    base = predict_generation(Decoder(SMALL), prompt_tokens=32, new_tokens=4, device="h100", dtype="float16")
    q = predict_generation(Decoder(SMALL), prompt_tokens=32, new_tokens=4, device="h100", dtype="float16",
                           weight_dtype="int4", kv_dtype="int8")
    assert q.prefill.analysis.total.macs == base.prefill.analysis.total.macs
    assert q.weight_bytes < base.weight_bytes and q.kv_cache_bytes == base.kv_cache_bytes // 2
    step_b, step_q = base.steps[32].analysis.total, q.steps[32].analysis.total
    assert step_q.macs == step_b.macs and step_q.bytes_read < step_b.bytes_read
    assert any("int4 weights" in a for a in q.assumptions) and any("KV cache in int8" in a for a in q.assumptions)


def test_definitions_of_the_figures():
    g = predict_generation("llama_tiny", prompt_tokens=16, new_tokens=5, device="raspberry-pi-5")
    assert g.total_ms == pytest.approx(g.ttft_ms + 4 * g.decode_ms_per_token)
    assert g.tokens_per_s == pytest.approx(5 * 1000 / g.total_ms)
    assert g.energy_mj_per_token == pytest.approx(g.energy_mj / 5)
    assert g.decode_step(18).analysis.total.macs > g.decode_step(16).analysis.total.macs


def test_generate_overheads_measured_or_derived_from_dispatch_time():
    from hwcost.generation import GENERATE_CALL_DISPATCHES, GENERATE_STEP_DISPATCHES, GENERATE_VOCAB_DISPATCHES_PER_1K

    doc = {"name": "b", "kind": "cpu", "description": "x", "execution": "sequential",
           "compute": {"matrix_tflops": {"float32": 0.1}}, "memory": {"bandwidth_gbps": 10.0},
           "overhead_us": {"host_per_op": 2.0}, "sources": {"compute": "x", "memory": "x", "overhead_us": "x"}}
    derived = predict_generation("llama_tiny", prompt_tokens=8, new_tokens=3, device=parse_profile(yaml.safe_dump(doc)))
    # llama_tiny's 32,000 logits per step, one thread's work (below PyTorch's grain of 32,768)
    assert derived.step_overhead_ms == pytest.approx((GENERATE_STEP_DISPATCHES + 32 * GENERATE_VOCAB_DISPATCHES_PER_1K) * 2e-3)
    assert derived.call_overhead_ms == pytest.approx(GENERATE_CALL_DISPATCHES * 2e-3)
    assert sum("generate()'s" in a for a in derived.assumptions) == 2
    assert any("per 1,000 vocabulary entries" in a for a in derived.assumptions)
    doc["overhead_us"].update(per_generate_step=300.0, per_generate_call=800.0, per_generate_step_per_1k_vocab=10.0)
    measured = predict_generation("llama_tiny", prompt_tokens=8, new_tokens=3, device=parse_profile(yaml.safe_dump(doc)))
    assert not any("generate()'s" in a or "vocabulary" in a for a in measured.assumptions)
    # time to first token: generate()'s setup, the prefill, and the step that picks the first token
    step_ms = (300.0 + 32 * 10.0) * 1e-3
    assert measured.ttft_ms == pytest.approx(0.8 + measured.prefill.latency_ms + step_ms)
    assert measured.decode_ms_at(8) == pytest.approx(measured.steps[8].latency_ms + step_ms)
    from hwcost.errors import ProfileError

    doc["overhead_us"]["per_generate_call"] = -1.0
    with pytest.raises(ProfileError, match="per_generate_call.*>= 0"):
        parse_profile(yaml.safe_dump(doc))
    doc["overhead_us"].update(per_generate_call=800.0, per_generate_step_per_1k_vocab="fast")
    with pytest.raises(ProfileError, match="per_generate_step_per_1k_vocab.*must be a number"):
        parse_profile(yaml.safe_dump(doc))


def test_generate_step_cost_grows_with_the_vocabulary_and_splits_across_threads_past_the_grain():
    from hwcost.generation import generate_step_us

    doc = {"name": "b", "kind": "cpu", "description": "x", "execution": "sequential", "threads": 4,
           "compute": {"matrix_tflops": {"float32": 0.1}}, "memory": {"bandwidth_gbps": 10.0},
           "overhead_us": {"host_per_op": 2.0, "per_generate_step": 100.0, "per_generate_step_per_1k_vocab": 12.0},
           "sources": {"compute": "x", "memory": "x", "overhead_us": "x"}}
    cpu = parse_profile(yaml.safe_dump(doc))
    assert generate_step_us(cpu, 32000)[0] == pytest.approx(100 + 12 * 32)          # one thread's pass
    assert generate_step_us(cpu, 128000)[0] == pytest.approx(100 + 12 * 128 / 4)    # four threads split it
    big = predict_generation(Decoder(DecoderConfig(vocab_size=128000, dim=64, layers=1, heads=4, kv_heads=2,
                                                   ffn_dim=128)), prompt_tokens=4, new_tokens=2, device=cpu)
    assert big.lm.vocab == 128000 and big.step_overhead_ms == pytest.approx((100 + 12 * 128 / 4) * 1e-3)
    # a batch passes over every sequence's logits: 4 x 32,000 past the grain, split four ways
    four = predict_generation("llama_tiny", prompt_tokens=4, new_tokens=2, batch_size=4, device=cpu)
    assert four.step_overhead_ms == pytest.approx((100 + 12 * 4 * 32 / 4) * 1e-3)
    doc.update(kind="gpu", execution="async")
    del doc["threads"], doc["overhead_us"]["per_generate_step_per_1k_vocab"]
    # a GPU without a measurement: the passes are a few kernels, their launches in the fixed part
    assert generate_step_us(parse_profile(yaml.safe_dump(doc)), 128000)[0] == pytest.approx(100.0)


def test_cli_generate_one_device_and_several(tmp_path, capsys):
    assert main(["generate", "llama_tiny", "--device", "raspberry-pi-5", "--prompt", "16", "--new", "4"]) == 0
    out = capsys.readouterr().out
    assert "time to first token:" in out and "tokens/s" in out and "fits" in out
    assert main(["generate", "llama_tiny", "--devices", "raspberry-pi-5,h100", "--prompt", "16", "--new", "4",
                 "--dtype", "float16", "--format", "json"]) == 2   # the Pi has no float16 rate
    assert "has no float16 rate" in capsys.readouterr().err
    assert main(["generate", "llama_tiny", "--devices", "jetson-orin-nano,h100", "--prompt", "16", "--new", "4",
                 "--dtype", "float16", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["device"] for r in rows] == ["jetson-orin-nano", "h100"] and all(r["fits"] for r in rows)
    # a table of several devices: shared assumptions once, each device's derived figures under its name
    assert main(["generate", "llama_tiny", "--devices", "raspberry-pi-5,h100", "--prompt", "16", "--new", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("assumes: greedy decoding") == 1
    assert "assumes (raspberry-pi-5): generate()'s own time per step" in out
    assert "assumes (h100): generate()'s own time per step" in out
    assert "assumes (raspberry-pi-5): ... plus" in out and "assumes (h100): ... plus" not in out


def test_cli_generate_from_a_config_json(tmp_path, capsys):
    cfg = _mistral(8)
    path = tmp_path / "config.json"
    path.write_text(cfg.to_json_string())
    assert main(["generate", str(path), "--device", "h100", "--prompt", "8", "--new", "3", "--dtype", "float16"]) == 0
    assert "time to first token" in capsys.readouterr().out


def test_transformers_module_calls_pay_the_measured_python_time():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2)
    doc = {"name": "b", "kind": "cpu", "description": "x", "execution": "sequential",
           "compute": {"matrix_tflops": {"float32": 0.1}}, "memory": {"bandwidth_gbps": 10.0},
           "overhead_us": {"host_per_op": 2.0}, "sources": {"compute": "x", "memory": "x", "overhead_us": "x"}}
    plain = predict_generation(cfg, prompt_tokens=8, new_tokens=2, device=parse_profile(yaml.safe_dump(doc)))
    doc["overhead_us"]["per_transformers_call"] = 10.0
    slower = predict_generation(cfg, prompt_tokens=8, new_tokens=2, device=parse_profile(yaml.safe_dump(doc)))
    calls = plain.prefill.analysis.transformers_calls
    assert calls > 10 and slower.prefill.latency_ms == pytest.approx(plain.prefill.latency_ms + calls * 10e-3)
    zoo = predict_generation(Decoder(SMALL), prompt_tokens=8, new_tokens=2, device=parse_profile(yaml.safe_dump(doc)))
    assert zoo.prefill.analysis.transformers_calls == 0   # hwcost's own modules are plain torch ones
    # ... and once per forward of the model, however many modules it has
    doc["overhead_us"]["per_transformers_forward"] = 300.0
    per_forward = predict_generation(cfg, prompt_tokens=8, new_tokens=2, device=parse_profile(yaml.safe_dump(doc)))
    assert plain.prefill.analysis.transformers_forwards == 1
    assert per_forward.prefill.latency_ms == pytest.approx(slower.prefill.latency_ms + 0.3)
    assert per_forward.decode_ms_at(9) == pytest.approx(slower.decode_ms_at(9) + 0.3)


def test_a_transformers_model_inside_a_users_module_counts_one_forward_per_call():
    import dataclasses

    import torch.nn as nn

    from hwcost.analysis import analyze as analyze_model
    from hwcost.execution import transformers_python_us

    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2)
    llama = transformers.LlamaForCausalLM(cfg)

    class Twice(nn.Module):   # a user's wrapper calling the transformers model twice per forward
        def __init__(self):
            super().__init__()
            self.lm = llama

        def forward(self, ids):
            return self.lm(ids).logits + self.lm(ids).logits

    ids = torch.zeros(1, 4, dtype=torch.long)
    once, twice = analyze_model(llama, (ids,)), analyze_model(Twice(), (ids,))
    assert once.transformers_forwards == 1 and twice.transformers_forwards == 2
    assert twice.transformers_calls == 2 * once.transformers_calls
    doc = {"name": "b", "kind": "cpu", "description": "x", "execution": "sequential",
           "compute": {"matrix_tflops": {"float32": 0.1}}, "memory": {"bandwidth_gbps": 10.0},
           "overhead_us": {"host_per_op": 2.0, "per_transformers_call": 10.0, "per_transformers_forward": 200.0,
                           "per_transformers_call_cached": 1.0, "per_transformers_forward_cached": 20.0},
           "sources": {"compute": "x", "memory": "x", "overhead_us": "x"}}
    prof = parse_profile(yaml.safe_dump(doc))
    calls = once.transformers_calls
    reuse = once.transformers_reuse_bytes
    pass_bytes = sum(c.memory_traffic_bytes for c in once.ops)
    assert len(reuse) == calls and max(reuse) == pass_bytes   # a class called once: the whole pass between
    assert min(reuse) < pass_bytes / 2                        # ... the second layer's: one layer apart
    # no private cache known: the in-network (evicted) figures
    assert transformers_python_us(once, prof) == pytest.approx(calls * 10.0 + 200.0)
    # a cache far larger than anything the ops move: the cached figures
    huge = dataclasses.replace(prof, calibration={"context": {"cache_bytes": 1e6 * pass_bytes}})
    assert transformers_python_us(once, huge) == pytest.approx(calls * 1.0 + 20.0, rel=1e-4)
    # smaller than the smallest reuse: all evicted
    tiny = dataclasses.replace(prof, calibration={"context": {"cache_bytes": min(reuse) / 2}})
    assert transformers_python_us(once, tiny) == pytest.approx(calls * 10.0 + 200.0)
    # in between: each call a share bytes / cache of the way, by hand
    mid_cache = pass_bytes / 2
    mid = dataclasses.replace(prof, calibration={"context": {"cache_bytes": mid_cache}})
    by_hand = sum(1.0 + min(1.0, b / mid_cache) * 9.0 for b in reuse) + 200.0
    assert transformers_python_us(once, mid) == pytest.approx(by_hand)
    # a malformed or negative figure in a profile is refused by name
    from hwcost.errors import ProfileError

    for key, bad, says in (("per_transformers_forward", "slow", "must be a number"),
                           ("per_transformers_call_cached", -1.0, ">= 0")):
        broken = {**doc, "overhead_us": {**doc["overhead_us"], key: bad}}
        with pytest.raises(ProfileError, match=f"{key}.*{says}"):
            parse_profile(yaml.safe_dump(broken))


def test_reuse_bytes_count_what_moved_between_two_runs_of_a_class():
    from hwcost.analysis import reuse_bytes
    from hwcost.records import OpCost
    from hwcost.trace import ModuleCall

    costs = [OpCost(None, "matmul", 0, 0, b, 0) for b in (100, 10, 1000, 1)]   # ops 0..3
    calls = [ModuleCall("a.0", "Block", False, 0, "transformers", 0), ModuleCall("a.1", "Block", False, 0, "transformers", 2),
             ModuleCall("n", "Norm", True, 0, "transformers", 1), ModuleCall("x", "Linear", True, 0, "torch", 0)]
    # Block at op 0 and op 2: 110 bytes between; the first Block from the pass before: 1111 - 110;
    # Norm, once: the pass
    assert reuse_bytes(calls, costs, "transformers") == [1001, 1111, 110]


def test_transformers_python_residuals_split_into_per_forward_and_per_call():
    from hwcost.calibration.transformers_overhead import split_residuals

    calls = {1: 10, 3: 22}
    f, c = split_residuals({1: 200e-6 + 10 * 15e-6, 3: 200e-6 + 22 * 15e-6}, calls)
    assert f == pytest.approx(200e-6) and c == pytest.approx(15e-6)
    # more layers cost less residual (noise on a small difference): all of it per forward, their mean
    f, c = split_residuals({1: 100e-6, 3: 80e-6}, calls)
    assert (f, c) == (pytest.approx(90e-6), 0.0)
    # a negative intercept: all per call
    f, c = split_residuals({1: 50e-6, 3: 200e-6}, calls)
    assert f == 0.0 and c == pytest.approx((5e-6 + 200e-6 / 22) / 2)
    # residuals below zero (the time model already over-predicts): nothing
    assert split_residuals({1: -50e-6, 3: -100e-6}, calls) == (0.0, 0.0)


def test_transformers_python_is_what_the_probe_takes_beyond_its_plain_counterpart():
    """The residual of each transformers probe forward is taken beside a plain-PyTorch network of the same
    ops timed in the same rounds: an error of the time model on those ops (here 0.4 ms over-predicted per
    layer, which alone would zero both figures) cancels, and per forward / per call come out as built."""
    pytest.importorskip("transformers")
    from hwcost.analysis import analyze
    from hwcost.calibration.transformers_overhead import (PROBE_LAYERS, fundamental_key, plain_counterpart,
                                                          probe_analyses, transformers_overheads)

    def predict_s(a):   # a stand-in time model: 20 us per op that launches
        return 20e-6 * sum(1 for c in a.ops if c.launches)

    per_forward, per_call, over_s = 150e-6, 12e-6, 400e-6
    fundamentals = {}
    for n, a in probe_analyses().items():
        net, ids, _ = plain_counterpart(n)
        for evicted in (False, True):
            # what the ops really took: the stand-in's figure less its over-prediction per layer
            fundamentals[fundamental_key(n, evicted, plain=True)] = predict_s(analyze(net, ids)) - over_s * n
            fundamentals[fundamental_key(n, evicted)] = (predict_s(a) - over_s * n + per_forward
                                                         + a.transformers_calls * per_call)
    got = transformers_overheads(fundamentals, predict_s)
    for suffix in ("", "_cached"):
        assert got[f"per_transformers_forward{suffix}"] == pytest.approx(per_forward * 1e6, abs=1e-3)
        assert got[f"per_transformers_call{suffix}"] == pytest.approx(per_call * 1e6, abs=1e-3)
    # without the plain timings (samples before them) the over-prediction swallows the residual
    older = {k: v for k, v in fundamentals.items() if not k.startswith("plain")}
    assert transformers_overheads(older, predict_s)["per_transformers_forward"] == 0.0
    assert set(PROBE_LAYERS) == set(probe_analyses())


def test_bad_generation_input_gets_a_clear_error(tmp_path):
    from hwcost.errors import InputError

    with pytest.raises(InputError, match="weight_dtype must be one of int8, int4"):
        predict_generation("llama_tiny", prompt_tokens=8, new_tokens=2, device="h100", weight_dtype="int3")
    with pytest.raises(InputError, match="at least 1"):
        predict_generation("llama_tiny", prompt_tokens=0, new_tokens=2, device="h100")
    with pytest.raises(InputError, match="not a causal language model hwcost knows"):
        predict_generation("mobilenet_v2", prompt_tokens=8, new_tokens=2, device="h100")
    assert main(["generate", "resnet18", "--device", "h100", "--prompt", "8", "--new", "2"]) == 2
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"hidden_size": 8}))
    transformers = pytest.importorskip("transformers")   # without it a config.json asks for it first
    with pytest.raises(InputError, match="no model_type"):
        predict_generation(str(bad), prompt_tokens=8, new_tokens=2, device="h100")
    t5 = transformers.T5Config(d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8, vocab_size=64)
    with pytest.raises(InputError, match="a 't5' config is an encoder-decoder"):
        predict_generation(t5, prompt_tokens=8, new_tokens=2, device="h100")
    bert = transformers.BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                   vocab_size=64)   # a causal-LM head exists, but no cache comes back
    with pytest.raises(InputError, match="not a decoder that keeps a KV cache"):
        predict_generation(bert, prompt_tokens=8, new_tokens=2, device="h100")


def test_a_vision_language_config_generates_through_its_decoder_and_a_broken_config_is_named():
    transformers = pytest.importorskip("transformers")
    from hwcost.errors import InputError

    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                head_dim=8, vocab_size=96, sliding_window=16)
    vlm = transformers.Gemma3Config(text_config=text, vision_config=dict(hidden_size=16, intermediate_size=32,
                                    num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14))
    g = predict_generation(vlm, prompt_tokens=8, new_tokens=3, device="raspberry-pi-5")
    plain = predict_generation(transformers.Gemma3TextConfig(**text), prompt_tokens=8, new_tokens=3,
                               device="raspberry-pi-5")
    assert g.kv_cache_bytes == plain.kv_cache_bytes > 0
    macs = [x.steps[8].analysis.total.macs for x in (g, plain)]
    assert macs[0] == macs[1]    # a text prompt: the decoder's work, no vision tower
    broken = transformers.AutoConfig.for_model("dots1")   # its default leaves n_routed_experts unset
    with pytest.raises(InputError, match="could not build a 'dots1' model from this config"):
        predict_generation(broken, prompt_tokens=8, new_tokens=2, device="h100")


def test_decode_steps_extrapolation_is_one_warning_naming_the_traced_contexts(calibrated_with):
    # every elementwise op outside what calibration sampled
    device = calibrated_with(lambda costs, device, dtype: ([1e-5] * len(costs),
                                                           [c.family == "elementwise" for c in costs]))
    g = predict_generation(Decoder(SMALL), prompt_tokens=16, new_tokens=9, device=device)
    assert len(g.steps) > 1
    steps = [w for w in g.warnings if w.startswith("decode steps:")]
    assert len(steps) == 1 and "lie outside what calibration sampled" in steps[0]
    assert "decode@" not in steps[0] and all(str(c) in steps[0] for c in g.steps)
    assert sum("lie outside" in w for w in g.warnings) == 2   # the prefill's line and the steps' line


# caches whose layout the config alone does not tell: multi-query (Falcon's default), latent attention
# (DeepSeek's: one compressed key per token, not heads x head_dim), a state-space model's fixed state, and a
# hybrid of attention and state-space layers; the MoE layers are left out so FlopCounterMode sees every MAC
CACHE_LAYOUTS = {
    "falcon": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, vocab_size=96),
    "deepseek_v3": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        vocab_size=96, max_position_embeddings=64, kv_lora_rank=16, q_lora_rank=16, qk_rope_head_dim=8,
                        qk_nope_head_dim=8, v_head_dim=8, first_k_dense_replace=2),
    # DeepSeek V3.2's sparse attention: its cache layers also keep one indexer key per token
    "deepseek_v32": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                         vocab_size=96, max_position_embeddings=64, kv_lora_rank=16, q_lora_rank=16, qk_rope_head_dim=8,
                         qk_nope_head_dim=8, v_head_dim=8, first_k_dense_replace=2, index_n_heads=2, index_head_dim=16,
                         index_topk=4),
    "mamba": dict(hidden_size=32, num_hidden_layers=2, vocab_size=96, state_size=8),
    "jamba": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=64, vocab_size=96, num_experts=1, attn_layer_period=2, attn_layer_offset=1,
                  mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, use_mamba_kernels=False),
}


@pytest.mark.parametrize("model_type", sorted(CACHE_LAYOUTS))
def test_decode_steps_read_the_cache_the_model_itself_builds(model_type):
    transformers = pytest.importorskip("transformers")
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from hwcost.formulas import PRODUCT_FAMILIES

    cfg = transformers.AutoConfig.for_model(model_type, **CACHE_LAYOUTS[model_type])
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    prompt = 9
    g = predict_generation(cfg, prompt_tokens=prompt, new_tokens=5, device="raspberry-pi-5")
    ids = torch.randint(3, 90, (1, prompt), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
        cache = out.past_key_values
        real_elements = sum(t.numel() for layer in cache.layers for v in vars(layer).values()
                            for t in (v.values() if isinstance(v, dict) else [v])
                            if isinstance(t, torch.Tensor) and t.dim() >= 2)
        # the first decode step as generate() runs it, on the cache the prefill returned
        step = model.prepare_inputs_for_generation(torch.cat([ids, out.logits[:, -1:].argmax(-1)], 1), cache=cache,
                                                   attention_mask=torch.ones(1, prompt + 1, dtype=torch.long),
                                                   use_cache=True, is_first_iteration=False, next_sequence_length=1)
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
            model(**{k: v for k, v in step.items() if v is not None})
    assert cache_elements(g.lm, 1, prompt) == real_elements
    ops = g.steps[prompt].analysis.ops
    assert sum(c.macs for c in ops if c.family in PRODUCT_FAMILIES) == fc.get_total_flops() // 2
    # a float16 KV cache halves the keys' and values' bytes; a recurrent state stays in the model's dtype
    half = predict_generation(cfg, prompt_tokens=prompt, new_tokens=5, device="raspberry-pi-5", kv_dtype="float16")
    kv, state = cache_parts(g.lm, 1, prompt + 5)
    assert g.kv_cache_bytes == (kv + state) * 4 and half.kv_cache_bytes == kv * 2 + state * 4
    assert any("fixed recurrent state" in a for a in g.assumptions) == (state > 0)
    read, read_half = g.steps[prompt].analysis.total.bytes_read, half.steps[prompt].analysis.total.bytes_read
    assert (read_half < read) == (kv > 0)
