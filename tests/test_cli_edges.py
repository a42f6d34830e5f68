"""The command line as a new user types it: each rough edge a newcomer met, mended."""
import csv
import io
import json

import pytest

import hwcost
from hwcost.cli import main
from hwcost.spaces import OFAMobileNetV3


def test_multi_device_search_keeps_the_table_when_one_budget_is_unreachable(capsys):
    assert main(["search", "--devices", "raspberry-pi-4,h100", "--latency-ms", "5,40",
                 "--population", "8", "--generations", "2"]) == 0
    out = capsys.readouterr().out
    assert "unreachable: fastest is" in out            # 5 ms on the Pi: said in its cell
    assert out.count("raspberry-pi-4") == 2 and out.count("h100") == 2


def test_search_returns_the_largest_network_when_it_fits():
    space = OFAMobileNetV3()
    r = hwcost.search(space, "h100", 40.0, population=8, generations=2)
    assert r.best == space.largest()


def test_search_explains_its_notation(capsys):
    assert main(["search", "--device", "h100", "--latency-ms", "40", "--population", "8", "--generations", "1"]) == 0
    out = capsys.readouterr().out
    assert "sub-network: r<input resolution> d<blocks per stage" in out


def test_compare_csv_is_csv(capsys):
    assert main(["compare", "mobilenet_v2", "--devices", "raspberry-pi-4,h100", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["device"] for r in rows] == ["raspberry-pi-4", "h100"] and float(rows[0]["latency_ms"]) > 0


def test_roofline_needs_out_and_never_overwrites_silently(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    with pytest.raises(SystemExit) as e:
        main(["roofline", "mobilenet_v2", "--device", "h100"])
    assert e.value.code == 2 and "--out" in capsys.readouterr().err
    png = tmp_path / "r.png"
    assert main(["roofline", "mobilenet_v2", "--device", "h100", "--out", str(png)]) == 0
    assert png.stat().st_size > 1000
    assert main(["roofline", "mobilenet_v2", "--device", "h100", "--out", str(png)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["roofline", "mobilenet_v2", "--device", "h100", "--out", str(png), "--force"]) == 0


def test_predict_without_device_says_which_it_used(capsys):
    assert main(["predict", "mobilenet_v2"]) == 0
    assert "no --device given: predicting for raspberry-pi-4" in capsys.readouterr().err


def test_negative_depth_is_a_clear_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["analyze", "mobilenet_v2", "--depth", "-1"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--depth: must be >= 0" in err and "Traceback" not in err


def test_measure_help_documents_every_option(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")   # argparse wraps help at the terminal's width
    with pytest.raises(SystemExit):
        main(["measure", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for opt, words in {"--input": "input shape", "--batch": "batch size", "--per-layer": "each leaf module",
                       "--reference": "drift-adjusted", "--format": "output format", "--out": "write the result",
                       "--backend": "where to run", "--dtype": "float16", "--repeats": "timed runs",
                       "--threads": "CPU threads", "--allocator": "page-fault"}.items():
        assert opt in text and words in text, opt


def test_devices_table_fits_a_terminal(capsys):
    assert main(["devices"]) == 0
    assert max(len(l) for l in capsys.readouterr().out.splitlines()) <= 120


def test_json_floats_are_rounded(capsys):
    assert main(["predict", "mobilenet_v2", "--device", "h100", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    digits = len(repr(d["latency_ms"]).replace(".", "").lstrip("0").split("e")[0])
    assert digits <= 6


def test_tiny_models_print_their_work_not_zero(tmp_path, capsys):
    f = tmp_path / "tiny.py"
    f.write_text("import torch.nn as nn\ndef build():\n    return nn.Linear(8, 4)\n")
    assert main(["predict", f"{f}:build", "--input", "8", "--device", "raspberry-pi-4"]) == 0
    out = capsys.readouterr().out
    assert "0.000 GMAC" not in out and "32 MAC" in out


def test_no_output_points_at_files_a_user_cannot_open(capsys):
    assert main(["analyze", "mobilenet_v2"]) == 0
    assert main(["predict", "mobilenet_v2", "--device", "raspberry-pi-4"]) == 0
    assert "seed 0" not in capsys.readouterr().out


def test_zoo_models_load_from_the_python_api():
    loaded = hwcost.load_model("mobilenet_v2")
    assert hwcost.analyze(loaded.model, loaded.example).total.params == 3_504_872
