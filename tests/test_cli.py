import json
import subprocess
import sys
import textwrap

import pytest

from hwcost.cli import main, parse_input


def run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_analyze_builtin_table(capsys):
    rc, out, _ = run(capsys, "analyze", "mobilenet_v2")
    assert rc == 0
    assert "features.0.0" in out and "parameters:             3,504,872" in out
    assert "74.25 MB" in out


def test_analyze_json_batch_dtype_depth(capsys, tmp_path):
    rc, out, _ = run(capsys, "analyze", "resnet18", "--batch", "4", "--dtype", "float16", "--format", "json")
    d = json.loads(out)
    assert rc == 0 and d["batch_size"] == 4 and d["dtype"] == "float16"
    assert d["total"]["macs"] == 4 * 1_814_073_344
    rc, out, _ = run(capsys, "analyze", "resnet18", "--depth", "1", "--format", "csv", "--out", str(tmp_path / "r.csv"))
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert rc == 0 and rows[5].startswith("layer1,Sequential")


def test_analyze_file_function(capsys, tmp_path):
    f = tmp_path / "mine.py"
    f.write_text(textwrap.dedent("""
        import torch.nn as nn
        def build_model():
            return nn.Sequential(nn.Linear(32, 64), nn.ReLU())
    """))
    rc, out, _ = run(capsys, "analyze", f"{f}:build_model", "--input", "32", "--batch", "2")
    assert rc == 0 and "4.10 KMAC" in out  # 2 x 32 x 64 MACs; params 32 x 64 + 64
    assert "2,112" in out


def test_token_input_spec():
    x = parse_input("128:int64")
    assert tuple(x.shape) == (1, 128) and str(x.dtype) == "torch.int64"
    assert parse_input("3,224,224") == (3, 224, 224)
    assert len(parse_input("3,8,8;10")) == 2


@pytest.mark.parametrize("argv,needle", [
    (["analyze", "resnet5"], "Did you mean: resnet50"),
    (["analyze", "resnet18", "--input", "3,a"], "cannot read input shape"),
    (["analyze", "resnet18", "--input", "3,22"], "layer 'conv1' (Conv2d)"),
    (["analyze", "resnet18", "--dtype", "fp12"], "unknown dtype"),
    (["analyze", "nothere.py:f"], "does not exist"),
    (["calibrate", "--refit"], "calibrate needs --name"),
    (["calibrate"], "calibrate needs --name"),
])
def test_errors_are_clear(capsys, argv, needle):
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and needle in err and "Traceback" not in err


def test_zoo_lists_models(capsys):
    rc, out, _ = run(capsys, "zoo")
    assert rc == 0 and "efficientnet_b0" in out and "5,288,548" in out


def test_python_dash_m():
    r = subprocess.run([sys.executable, "-m", "hwcost", "analyze", "alexnet", "--format", "json"],
                       capture_output=True, text=True, check=True)
    assert json.loads(r.stdout)["total"]["params"] == 61_100_840


def test_analyze_trace_mode_flag(capsys):
    rc, out, _ = run(capsys, "analyze", "lstm_classifier", "--input", "16:int64", "--trace", "values",
                     "--format", "json")
    values = json.loads(out)
    rc2, out2, _ = run(capsys, "analyze", "lstm_classifier", "--input", "16:int64", "--format", "json")
    meta = json.loads(out2)
    assert rc == rc2 == 0
    assert (values["trace_mode"], meta["trace_mode"]) == ("values", "meta")
    assert values["total"]["macs"] == meta["total"]["macs"] > 0


def test_measure_against_a_profiles_probe_and_refused_without_one(capsys, tmp_path):
    import yaml

    (tmp_path / "tiny.py").write_text("import torch.nn as nn\n\ndef build():\n    return nn.Linear(16, 16), (16,)\n")
    spec = f"{tmp_path / 'tiny.py'}:build"
    rc, _, err = run(capsys, "measure", spec, "--repeats", "2", "--reference", "raspberry-pi-4")
    assert rc == 2 and "records no probe time" in err and "recalibrate" in err   # a datasheet profile
    doc = {"name": "cal", "kind": "cpu", "description": "x", "execution": "sequential",
           "compute": {"matrix_tflops": {"float32": 0.1}}, "memory": {"bandwidth_gbps": 10.0},
           "overhead_us": {"host_per_op": 2.0}, "sources": {"compute": "x", "memory": "x", "overhead_us": "x"},
           "calibration": {"threads": 1, "probe": {"during_ms": 2.0, "b8_during_ms": 15.0}}}
    (tmp_path / "cal.yaml").write_text(yaml.safe_dump(doc))
    # a dtype the profile has no rate for cannot be predicted there: timed against the batch-1 probe
    rc, out, err = run(capsys, "measure", spec, "--repeats", "2", "--dtype", "bfloat16",
                       "--reference", str(tmp_path / "cal.yaml"))
    assert rc == 0, err
    assert "reference (probe b1)" in out and "the reference ran 2.000 ms at calibration" in out


def test_a_transformers_config_json_is_a_model_for_every_command(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    import torch

    import hwcost

    llama = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, vocab_size=100)
    llama.save_pretrained(tmp_path / "llama")
    loaded = hwcost.load_model(str(tmp_path / "llama"))            # the folder, or its config.json
    assert loaded.example.shape == (1, 128) and loaded.example.dtype == torch.long
    with torch.device("meta"):
        direct = transformers.AutoModelForCausalLM.from_config(llama)
    assert (hwcost.analyze(loaded.model, loaded.example).total.macs
            == hwcost.analyze(direct, torch.zeros(1, 128, dtype=torch.long)).total.macs)
    assert main(["predict", str(tmp_path / "llama" / "config.json"), "--device", "h100", "--input", "16:int64"]) == 0
    assert "latency:" in capsys.readouterr().out
    timed = hwcost.load_model(str(tmp_path / "llama"), meta=False).model   # measure and validate time it: real weights
    assert not any(p.is_meta for p in timed.parameters())
    vit = transformers.ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                 image_size=32, patch_size=8)
    vit.save_pretrained(tmp_path / "vit")
    assert hwcost.load_model(str(tmp_path / "vit")).example == (3, 32, 32)   # a vision model: an image of its size
    t5 = transformers.T5Config(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=100)
    t5.save_pretrained(tmp_path / "t5")
    enc_dec = hwcost.load_model(str(tmp_path / "t5"))    # with its LM head, fed 128 decoder ids beside the input's
    assert type(enc_dec.model).__name__ == "T5ForConditionalGeneration" and set(enc_dec.example) == {
        "input_ids", "decoder_input_ids"}
    assert hwcost.analyze(enc_dec.model, enc_dec.example).total.macs > 0
    (tmp_path / "bad.json").write_text(json.dumps({"hidden_size": 8}))
    assert main(["analyze", str(tmp_path / "bad.json")]) == 2
    assert "no model_type" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{not json")
    assert main(["analyze", str(tmp_path / "broken.json")]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    (tmp_path / "unknown.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    assert main(["predict", str(tmp_path / "unknown.json"), "--device", "h100"]) == 2
    assert "transformers cannot read" in capsys.readouterr().err


def test_a_config_json_gets_the_input_its_model_reads(tmp_path, capsys):
    """The default input follows the model's main input: an image for a vision model even where its config has a
    vocabulary (BEiT), a dual encoder's text and image, token ids within its positions, a second of audio or of
    speech features in the model's layout, Whisper's mel window, a video clip; an encoder-decoder is built whole (not
    its decoder alone, BART's causal-LM class)."""
    transformers = pytest.importorskip("transformers")
    import torch

    import hwcost

    def saved(name, config):
        config.save_pretrained(tmp_path / name)
        return hwcost.load_model(str(tmp_path / name))

    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    beit = saved("beit", transformers.BeitConfig(**small, image_size=32, patch_size=8, vocab_size=100))
    assert beit.example == (3, 32, 32)
    assert hwcost.analyze(beit.model, beit.example).total.macs > 0
    clip = saved("clip", transformers.CLIPConfig(
        text_config=dict(**small, vocab_size=100, max_position_embeddings=77),
        vision_config=dict(**small, image_size=32, patch_size=8)))
    assert clip.example["input_ids"].shape == (1, 77) and clip.example["pixel_values"].shape == (1, 3, 32, 32)
    text_and_image = hwcost.analyze(clip.model, clip.example).total.macs
    text_alone = hwcost.analyze(clip.model.text_model, clip.example["input_ids"]).total.macs
    assert text_and_image > text_alone > 0
    wav = saved("wav2vec2", transformers.Wav2Vec2Config(**small, conv_dim=(16, 16), conv_stride=(5, 2),
                                                        conv_kernel=(10, 3), num_conv_pos_embeddings=16))
    assert wav.example["input_values"].shape == (1, 16_000)      # wav2vec 2.0 reads 16 kHz samples
    # (16,000 - 10) // 5 + 1 = 3,199 frames, then (3,199 - 3) // 2 + 1 = 1,599: the encoder runs over those
    assert hwcost.analyze(wav.model, wav.example).total.macs > 1_599 * 32 * 64 * 2
    whisper = saved("whisper", transformers.WhisperConfig(
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16, max_source_positions=50))   # built on meta
    assert type(whisper.model).__name__ == "WhisperForConditionalGeneration"
    assert whisper.example["input_features"].shape == (1, 16, 100)   # two frames per encoder position
    assert whisper.example["decoder_input_ids"].shape == (1, 128)
    bart_config = transformers.BartConfig(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                                          decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                          vocab_size=100)
    bart = saved("bart", bart_config)
    assert type(bart.model).__name__ == "BartForConditionalGeneration"
    with torch.device("meta"):
        whole = transformers.BartForConditionalGeneration(bart_config)
    assert hwcost.analyze(bart.model, bart.example).total.macs == hwcost.analyze(whole, bart.example).total.macs
    with pytest.raises(hwcost.InputError, match="encoder-decoder"):
        hwcost.predict_generation(str(tmp_path / "bart"), prompt_tokens=8, new_tokens=2, device="h100")
    # speech features in the layout each model runs: (frames, bins) for Speech2Text, whose front end transposes
    # them, (bins, frames) for GLM-ASR's convolutions over bins as channels; a second at a 10 ms hop
    s2t = saved("s2t", transformers.Speech2TextConfig(
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100, input_feat_per_channel=40, conv_channels=32))
    assert s2t.example["input_features"].shape == (1, 100, 40) and s2t.example["decoder_input_ids"].shape == (1, 128)
    assert hwcost.analyze(s2t.model, s2t.example).total.macs > 0
    glm = saved("glmasr", transformers.GlmAsrEncoderConfig(**small, num_mel_bins=24, max_position_embeddings=64))
    assert glm.example["input_features"].shape == (1, 24, 100)
    assert hwcost.analyze(glm.model, glm.example).total.macs > 0
    # a clip of the config's frame count, (frames, channels, height, width)
    video = saved("videomae", transformers.VideoMAEConfig(**small, image_size=32, patch_size=8, num_frames=4))
    assert video.example == (4, 3, 32, 32)
    assert hwcost.analyze(video.model, video.example).total.macs > 0
    # an input the config cannot size: the model still loads, and the command says what to pass
    agent = saved("decision", transformers.DecisionTransformerConfig(
        state_dim=5, act_dim=2, hidden_size=32, n_layer=1, n_head=2, n_inner=64, max_ep_len=16))
    assert agent.example is None and "--input" in agent.input_hint
    import importlib.util
    if importlib.util.find_spec("timm") is None:   # DETR's default backbone comes from timm: say so, not "fields"
        transformers.DetrConfig().save_pretrained(tmp_path / "detr")
        with pytest.raises(hwcost.UnknownModelError, match="needs a package that is not installed.*timm"):
            hwcost.load_model(str(tmp_path / "detr"))
    assert main(["predict", str(tmp_path / "decision"), "--device", "h100"]) == 2
    err = capsys.readouterr().err
    assert "cannot size the input" in err and "states" in err


def test_an_input_layout_is_taken_from_the_first_candidate_the_model_runs():
    """Speech models read features as (frames, bins) or (bins, frames) under one name: the first layout a meta
    trace runs is taken; one that stops only for want of values (an op on the weights' values) is kept as
    undecided, since it may run on real tensors; None where every layout fails on its shape."""
    import torch
    import torch.nn as nn

    from hwcost.config_inputs import _first_that_runs

    class BinsAsChannels(nn.Module):
        def __init__(self, value_op: bool):
            super().__init__()
            self.conv, self.value_op = nn.Conv1d(4, 8, 3), value_op

        def forward(self, input_features):
            y = self.conv(input_features)
            return y[:, self.conv.weight[0, 0] > 0] if self.value_op else y

    frames_bins, bins_frames = torch.zeros(1, 10, 4), torch.zeros(1, 4, 10)
    assert _first_that_runs(BinsAsChannels(False), "input_features", [frames_bins, bins_frames], {}) is bins_frames
    with torch.device("meta"):
        needs_values = BinsAsChannels(True)
    assert _first_that_runs(needs_values, "input_features", [frames_bins, bins_frames], {}) is bins_frames
    assert _first_that_runs(BinsAsChannels(False), "input_features", [torch.zeros(1, 10, 5)], {}) is None
