"""Predict a model's per-layer latency and energy on a few devices, from the Python API."""
import hwcost


model = hwcost.load_model("mobilenet_v2").model  # built on the meta device: no weights needed
p = hwcost.predict(model, (3, 224, 224), device="raspberry-pi-4")
print(p.table(depth=2))
for device in ("raspberry-pi-5", "jetson-orin-nano", "h100"):
    q = hwcost.predict(model, (3, 224, 224), device=device, batch_size=8, dtype="float16" if hwcost.load_device(device).kind == "gpu" else "float32")
    print(f"{device:18s} batch 8: {q.latency_ms:8.2f} ms  {q.fps:8.0f} FPS  {q.energy_per_sample_mj:7.2f} mJ/sample")
