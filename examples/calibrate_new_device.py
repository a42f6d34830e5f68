"""Calibrate the machine this runs on, then validate the profile on two models it never saw.

    python examples/calibrate_new_device.py [--quick]
"""
import sys

import hwcost


quick = "--quick" in sys.argv
profile = hwcost.calibrate(name="this-machine", out="this-machine.yaml", quick=quick)
print(f"calibrated: {profile.calibration['cases']} cases, chain error "
      f"{profile.calibration['context']['median_abs_error_pct']}%")
for name in ("mobilenet_v2", "resnet18"):
    loaded = hwcost.load_model(name, meta=False)
    m = hwcost.measure(loaded.model, loaded.example)
    p = hwcost.predict(loaded.model, loaded.example, device=profile)
    print(f"{name:14s} measured {m.latency_ms:7.2f} ms  predicted {p.latency_ms:7.2f} ms  "
          f"error {100 * (p.latency_ms / m.latency_ms - 1):+.1f}%")
