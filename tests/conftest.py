"""Shared test fixtures."""
import pytest
import yaml


@pytest.fixture
def calibrated_with(monkeypatch):
    """A calibrated CPU profile whose time model is replaced by ``fake(costs, device, dtype)`` -> (seconds,
    extrapolated flags): for tests of what a prediction does with the model's answers."""
    import hwcost.execution as ex
    from hwcost.devices import parse_profile

    def make(fake):
        monkeypatch.setattr(ex, "calibrated_times", fake)
        doc = {"name": "cal", "kind": "cpu", "description": "x", "execution": "sequential",
               "compute": {"matrix_tflops": {"float32": 0.1}}, "memory": {"bandwidth_gbps": 10.0},
               "overhead_us": {"host_per_op": 2.0}, "sources": {"compute": "x", "memory": "x", "overhead_us": "x"},
               "calibration": {"threads": 1}}
        return parse_profile(yaml.safe_dump(doc))

    return make
