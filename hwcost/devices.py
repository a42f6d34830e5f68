"""Device profiles: YAML files (shipped in device_profiles/ or the user's own), validated on load.

Long because the schema's checks are written out, one clear error per way a profile can be wrong.

Schema (units are in the key names; every group of numbers needs an entry under ``sources``)::

    name: raspberry-pi-4
    kind: cpu                       # cpu | gpu | npu
    description: ...
    execution: sequential           # sequential (eager CPU) | async (host enqueues, device runs)
    launch: queued                  # async only: queued (the host runs ahead) | blocking (it does not)
    grouped_conv: native            # sequential only: native | per_group (PyTorch without oneDNN: one
                                    # convolution per group; needs sources.grouped_conv)
    isa: aarch64                    # aarch64 | x86_64 (CPUs), cuda | opencl (GPUs): what validate checks
    compute:
      matrix_tflops: {float32: ..., float16: ..., bfloat16: ..., int8: ...}   # dense peak, matrix units
      vector_tflops: {...}          # optional: elementwise peak (GPU CUDA cores); default = matrix
      tf32_tflops: ...              # optional (GPU): fp32 convolutions run as TF32 (cuDNN default)
    memory: {bandwidth_gbps: ..., capacity_gb: ..., cache_mb: ...}
    overhead_us: {host_per_op: ..., device_per_op: ...}
    power_w: {idle: ..., typical: ..., max: ...}
    energy: {pj_per_flop: ..., pj_per_byte: ...}   # sequential (CPU) profiles; async (GPU) ones need only power_w
    efficiency:                     # optional; defaults per kind (device_profiles/_defaults.yaml)
      compute: {family: fraction}   # of peak that large ops of the family reach
      memory: fraction              # of bandwidth
      startup_dispatches: {family: n}   # fixed cost per call = n x host_per_op (small ops are slower)
    calibration: {...}              # written by `hwcost calibrate`
    sources: {compute: "...", memory: "...", ...}
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from .errors import ProfileError

DTYPES = ("float32", "float16", "bfloat16", "int8")
KINDS = ("cpu", "gpu", "npu")
EXECUTIONS = ("sequential", "async")
LAUNCHES = ("queued", "blocking")
GROUPED_CONVS = ("native", "per_group")

# (required, type) per key; nested dicts list their own keys
_SCHEMA: dict[str, Any] = {
    "name": (True, str),
    "kind": (True, str),
    "description": (True, str),
    "execution": (True, str),
    "launch": (False, str),
    "grouped_conv": (False, str),
    "isa": (False, str),
    "threads": (False, int),
    "compute": (True, {
        "matrix_tflops": (True, {d: (d == "float32", float) for d in DTYPES}),
        "vector_tflops": (False, {d: (False, float) for d in DTYPES}),
        "tf32_tflops": (False, float),
    }),
    "memory": (True, {
        "bandwidth_gbps": (True, float),
        "capacity_gb": (False, float),
        "reserved_gb": (False, float),   # what the OS and the runtime keep (needs capacity_gb)
        "cache_mb": (False, float),
    }),
    "overhead_us": (True, {
        "host_per_op": (True, float),
        "device_per_op": (False, float),
        "per_module_call": (False, float),
        "per_view": (False, float),
        "per_generate_step": (False, float),   # generate()'s own time per token around the forward ...
        "per_generate_step_per_1k_vocab": (False, float),   # ... and per 1,000 vocabulary entries on top
        "per_generate_call": (False, float),   # ... and per call, before its first forward
        "per_transformers_call": (False, float),   # a transformers module's Python beyond a plain module call
        "per_transformers_forward": (False, float),   # ... and a transformers model's per forward (mask, rotary)
        "per_transformers_call_cached": (False, float),      # both again for a model that stays in the
        "per_transformers_forward_cached": (False, float),   # host's private caches (weights smaller)
    }),
    "power_w": (False, {"idle": (True, float), "typical": (False, float), "max": (True, float)}),
    "energy": (False, {"pj_per_flop": (True, float), "pj_per_byte": (True, float)}),
    "efficiency": (False, "efficiency"),
    "calibration": (False, dict),
    "sources": (True, dict),
}
_NEEDS_SOURCE = ("compute", "memory", "overhead_us", "power_w", "energy")
_ZERO_ALLOWED = {("overhead_us", k) for k in ("device_per_op", "host_per_op", "per_module_call", "per_view",
                                               "per_generate_step", "per_generate_step_per_1k_vocab",
                                               "per_generate_call", "per_transformers_call",
                                               "per_transformers_forward", "per_transformers_call_cached",
                                               "per_transformers_forward_cached")}


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    kind: str
    description: str
    execution: str
    matrix_tflops: dict[str, float]
    vector_tflops: dict[str, float]
    tf32_tflops: float | None
    bandwidth_gbps: float
    host_per_op_us: float
    device_per_op_us: float
    module_call_us: float
    view_us: float
    power_idle_w: float | None
    power_max_w: float | None
    pj_per_flop: float | None
    pj_per_byte: float | None
    compute_efficiency: dict[str, float]
    memory_efficiency: float
    startup_dispatches: dict[str, float] = field(default_factory=dict)
    capacity_gb: float | None = None
    reserved_gb: float = 0.0
    cache_mb: float | None = None
    power_typical_w: float | None = None
    threads: int | None = None
    isa: str | None = None
    generate_step_us: float | None = None
    generate_step_per_1k_vocab_us: float | None = None
    generate_call_us: float | None = None
    transformers_call_us: float = 0.0
    transformers_forward_us: float = 0.0
    transformers_call_cached_us: float | None = None      # None: as in a network
    transformers_forward_cached_us: float | None = None
    launch_blocking: bool = False   # async: a launch returns only when its kernel is done (no host run-ahead)
    # sequential: grouped convolutions run one convolution per group (PyTorch built without oneDNN), at
    # the kind's per_group_conv costs in dispatches: startup, per group and per im2col column element
    grouped_conv_per_group: bool = False
    per_group_conv: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    path: str | None = None

    def peak_flops(self, dtype: str, matrix: bool = True) -> float:
        """FLOP/s at ``dtype``: matrix units for products, vector units for elementwise work (the
        matrix figure where the profile gives no vector one). A dtype without a matrix figure is refused."""
        require_rate(self, dtype)
        table = self.vector_tflops if not matrix and dtype in self.vector_tflops else self.matrix_tflops
        return 1e12 * table[dtype]

    @property
    def energy_model(self) -> str | None:
        """How predictions turn work into joules (None: the profile has no power figures).

        "busy": a GPU draws its idle power whenever it is up and about its maximum while a kernel
        runs, however much of the peak that kernel reaches; energy = idle x latency + (max - idle)
        x device-busy time. Checked on 40 H100 runs (calibration/reference): median 1.06x of measured,
        all within 1.5x; per FLOP and byte at the datasheet rates the same runs came out 0.38x
        (an eager fp32 convolution reaching 5% of the TF32 peak still draws ~630 W).
        "linear": idle x latency + pJ/FLOP x FLOPs + pJ/byte x bytes: CPUs (a calibration with RAPL fits
        exactly that form), and GPU profiles an older hwcost calibrated with that form."""
        if self.power_idle_w is None or self.power_max_w is None:
            return None
        fit = (self.calibration or {}).get("energy")   # a calibration's note is text when nothing was fitted
        fitted = fit.get("fitted") if isinstance(fit, dict) else None
        if self.execution == "async" and (not fitted or fitted.get("form") == "busy"):
            return "busy"       # datasheet idle/max, or a calibration's fitted static and busy power
        return "linear" if self.pj_per_flop is not None and self.pj_per_byte is not None else None

    @property
    def has_energy(self) -> bool:
        return self.energy_model is not None

    def calibration_file_text(self, kind: str) -> str:
        """The text of a file behind a calibrated profile ("samples" or "model"), beside its YAML
        (hwcost.timemodel.calibration_text checks it against the hash the profile records)."""
        cal = self.calibration or {}
        fname = cal.get(f"{kind}_file")
        if not fname:
            raise ProfileError(f"{self.path}: the calibration section has no {kind}_file; recalibrate")
        if self.path and self.path.endswith("(shipped)"):
            return (_profiles_dir() / fname).read_text()
        full = os.path.join(os.path.dirname(os.path.abspath(self.path or ".")), fname)
        if not os.path.isfile(full):
            raise ProfileError(f"{self.path}: its {kind} file {full!r} is missing; keep it beside the YAML")
        with open(full) as f:
            return f.read()

    @property
    def ridge_flop_per_byte(self) -> float:
        return self.peak_flops("float32") / (self.bandwidth_gbps * 1e9)



def require_rate(profile: DeviceProfile, dtype: str) -> None:
    """Refuse a dtype the profile has no rate for: eager PyTorch on a CPU without native kernels for a
    dtype converts and runs it far slower than float32, so falling back to any other rate would be a
    guess (and a calibration that never timed a dtype knows nothing of it)."""
    if dtype in profile.matrix_tflops:
        return
    have = ", ".join(profile.matrix_tflops)
    how = ("calibrate with --dtypes float32," + dtype if profile.calibration else
           f"add a cited compute.matrix_tflops.{dtype} to the profile, or calibrate the device with --dtypes float32,{dtype}")
    raise ProfileError(f"{profile.name} has no {dtype} rate (it lists {have}): no datasheet figure or measurement says "
                       f"how fast eager PyTorch runs {dtype} there, so hwcost will not guess. Predict at {have}, or {how}")


@dataclass(frozen=True)
class MemoryFit:
    """Whether a run's memory fits a device: what it needs against what the device leaves to it."""

    needed_bytes: int
    usable_bytes: int | None      # capacity less what the OS and runtime keep; None: the profile gives no capacity
    parts: tuple[tuple[str, int], ...]   # (what, bytes): weights, activations, KV cache ...

    @property
    def fits(self) -> bool | None:
        return None if self.usable_bytes is None else self.needed_bytes <= self.usable_bytes

    @property
    def shortfall_bytes(self) -> int:
        return 0 if self.usable_bytes is None else max(0, self.needed_bytes - self.usable_bytes)

    def warning(self, device_name: str) -> str | None:
        if self.fits is not False:
            return None
        gb = 1e9
        what = " + ".join(f"{name} {n / gb:,.2f} GB" for name, n in self.parts if n >= 0.005 * gb)
        return (f"does not fit: needs {self.needed_bytes / gb:,.2f} GB ({what}) but {device_name} leaves "
                f"{self.usable_bytes / gb:,.2f} GB to it ({self.shortfall_bytes / gb:,.2f} GB short): it cannot run "
                "there as is (a smaller dtype, quantized weights or another device)")


def memory_fit(profile: DeviceProfile, parts: dict[str, int]) -> MemoryFit:
    """Memory a run needs (weights, activations, caches: ``parts``) against the device's capacity less
    what its OS and runtime keep (``memory.reserved_gb``); GB = 10**9 bytes, as memory is sold."""
    usable = None if profile.capacity_gb is None else int((profile.capacity_gb - profile.reserved_gb) * 1e9)
    return MemoryFit(sum(parts.values()), usable, tuple(parts.items()))


def profile_fingerprint(profile: DeviceProfile) -> str:
    """sha256 of everything a prediction reads from a profile (its location aside): a calibrated
    profile's section records its model file's hash, so a refit changes the fingerprint too."""
    import dataclasses
    import hashlib
    import json

    fields = {k: v for k, v in dataclasses.asdict(profile).items() if k != "path"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------ loading


def _profiles_dir():
    return resources.files("hwcost.device_profiles")


def devices() -> list[str]:
    """Names of the shipped device profiles."""
    return sorted(
        p.name[:-5] for p in _profiles_dir().iterdir() if p.name.endswith(".yaml") and not p.name.startswith("_")
    )


def _defaults() -> dict[str, Any]:
    return yaml.safe_load((_profiles_dir() / "_defaults.yaml").read_text())


def load_device(name_or_path: str | os.PathLike | DeviceProfile) -> DeviceProfile:
    """A shipped profile by name (``hwcost devices``), or a YAML file path."""
    if isinstance(name_or_path, DeviceProfile):
        return name_or_path
    spec = os.fspath(name_or_path)
    if spec.endswith((".yaml", ".yml")) or os.sep in spec:
        if not os.path.isfile(spec):
            raise ProfileError(f"device profile file {spec!r} does not exist")
        with open(spec) as f:
            text = f.read()
        return parse_profile(text, spec)
    shipped = devices()
    if spec not in shipped:
        close = difflib.get_close_matches(spec, shipped, n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ProfileError(
            f"unknown device {spec!r}.{hint} Shipped profiles: {', '.join(shipped)}; "
            "or pass the path of a profile YAML (see README, 'Adding a device')."
        )
    res = _profiles_dir() / f"{spec}.yaml"
    return parse_profile(res.read_text(), f"{spec}.yaml (shipped)")


def parse_profile(text: str, where: str = "<profile>") -> DeviceProfile:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ProfileError(f"{where}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: a profile is a YAML mapping of fields (name, kind, compute, ...)")
    _validate(data, _SCHEMA, where, ())
    return _build(data, where)


def _validate(data: dict, schema: dict, where: str, path: tuple[str, ...]) -> None:
    at = ".".join(path)
    unknown = set(data) - set(schema)
    if unknown:
        raise ProfileError(
            f"{where}: unknown field{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr('.'.join(path + (u,))) for u in sorted(unknown))}; "
            f"allowed{' in ' + at if at else ''}: {', '.join(schema)}"
        )
    for key, (required, kind) in schema.items():
        full = ".".join(path + (key,))
        if key not in data or data[key] is None:
            if required:
                raise ProfileError(f"{where}: missing required field {full!r}")
            continue
        value = data[key]
        if isinstance(kind, dict):
            if not isinstance(value, dict):
                raise ProfileError(f"{where}: {full!r} must be a mapping with keys {', '.join(kind)}")
            _validate(value, kind, where, path + (key,))
        elif kind == "efficiency":
            _validate_efficiency(value, where)
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ProfileError(
                    f"{where}: {full!r} must be a number in the unit its name gives "
                    f"({_unit(full)}), got {value!r}"
                )
            zero_ok = (path[-1] if path else "", key) in _ZERO_ALLOWED
            if value < 0 or (value == 0 and not zero_ok):
                raise ProfileError(f"{where}: {full!r} must be {'>= 0' if zero_ok else '> 0'}, got {value!r}")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ProfileError(f"{where}: {full!r} must be a positive integer, got {value!r}")
        elif not isinstance(value, kind):
            raise ProfileError(f"{where}: {full!r} must be a {kind.__name__}, got {value!r}")
    if not path:
        if data["kind"] not in KINDS:
            raise ProfileError(f"{where}: 'kind' must be one of {', '.join(KINDS)}, got {data['kind']!r}")
        if data["execution"] not in EXECUTIONS:
            raise ProfileError(
                f"{where}: 'execution' must be one of {', '.join(EXECUTIONS)}, got {data['execution']!r}")
        if "launch" in data and (data["launch"] not in LAUNCHES or data["execution"] != "async"):
            raise ProfileError(
                f"{where}: 'launch' is for async (GPU) profiles and must be one of {', '.join(LAUNCHES)}, "
                f"got {data['launch']!r} with execution {data['execution']!r}")
        if "grouped_conv" in data:
            if data["grouped_conv"] not in GROUPED_CONVS or data["execution"] != "sequential":
                raise ProfileError(
                    f"{where}: 'grouped_conv' is for sequential (CPU) profiles and must be one of "
                    f"{', '.join(GROUPED_CONVS)}, got {data['grouped_conv']!r} with execution {data['execution']!r}")
            if data["grouped_conv"] == "per_group" and "grouped_conv" not in data["sources"]:
                raise ProfileError(f"{where}: 'grouped_conv: per_group' needs 'sources.grouped_conv': which PyTorch "
                                   "build the profile describes (one without oneDNN)")
        if "power_w" in data and data["power_w"]["idle"] > data["power_w"]["max"]:
            raise ProfileError(f"{where}: 'power_w.idle' is above 'power_w.max'")
        mem = data["memory"]
        if mem.get("reserved_gb") is not None and (mem.get("capacity_gb") is None or mem["reserved_gb"] >= mem["capacity_gb"]):
            raise ProfileError(f"{where}: 'memory.reserved_gb' needs 'memory.capacity_gb' beside it, and below it")
        if "energy" in data and "power_w" not in data:
            raise ProfileError(f"{where}: 'energy' needs 'power_w' (idle and max) beside it")
        if "power_w" in data and "energy" not in data and data["execution"] != "async":
            raise ProfileError(f"{where}: a sequential (CPU) profile's energy needs both 'power_w' and 'energy' "
                               "(pJ per FLOP and per byte), or neither; an async (GPU) one needs only 'power_w'")
        missing = [k for k in _NEEDS_SOURCE if k in data and k not in data["sources"]]
        if missing:
            raise ProfileError(
                f"{where}: 'sources' must say where each group of numbers comes from; missing: "
                f"{', '.join(missing)} (a datasheet, paper or measurement for each)"
            )


def _unit(full: str) -> str:
    for suffix, unit in (("tflops", "TFLOP/s"), ("gbps", "GB/s"), ("_gb", "GB"), ("_mb", "MiB"),
                         ("overhead_us", "microseconds"), ("power_w", "watts"), ("pj_per", "picojoules")):
        if suffix in full:
            return unit
    return "see README"


def _validate_efficiency(value: Any, where: str) -> None:
    from .formulas import FAMILIES

    if not isinstance(value, dict) or set(value) - {"compute", "memory", "startup_dispatches"}:
        raise ProfileError(f"{where}: 'efficiency' is a mapping with 'compute' (per op family), 'memory' "
                           "and 'startup_dispatches' (per op family)")
    startup = value.get("startup_dispatches") or {}
    if not isinstance(startup, dict):
        raise ProfileError(f"{where}: efficiency.startup_dispatches maps op families to a number >= 0")
    for fam, n in startup.items():
        if fam not in FAMILIES:
            raise ProfileError(f"{where}: efficiency.startup_dispatches has unknown op family {fam!r}; "
                               f"families: {', '.join(FAMILIES)}")
        if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0:
            raise ProfileError(f"{where}: efficiency.startup_dispatches.{fam} must be a number >= 0 "
                               f"(multiples of overhead_us.host_per_op), got {n!r}")
    for fam, frac in (value.get("compute") or {}).items():
        if fam not in FAMILIES:
            raise ProfileError(f"{where}: efficiency.compute has unknown op family {fam!r}; families: {', '.join(FAMILIES)}")
        if not isinstance(frac, (int, float)) or not 0 < frac <= 1:
            raise ProfileError(f"{where}: efficiency.compute.{fam} must be a fraction in (0, 1], got {frac!r}")
    mem = value.get("memory")
    if mem is not None and (not isinstance(mem, (int, float)) or not 0 < mem <= 1):
        raise ProfileError(f"{where}: efficiency.memory must be a fraction in (0, 1], got {mem!r}")


def _opt(d: dict, group: str, key: str) -> float | None:
    v = (d.get(group) or {}).get(key)
    return None if v is None else float(v)


def _build(d: dict, where: str) -> DeviceProfile:
    eff = d.get("efficiency") or {}
    defaults = _defaults()["kinds"].get(d["kind"])
    if defaults is None:
        from .formulas import FAMILIES

        missing = [f for f in FAMILIES if f not in (eff.get("compute") or {})]
        if missing or "memory" not in eff:
            raise ProfileError(
                f"{where}: there are no default efficiencies for kind {d['kind']!r}; give "
                f"'efficiency.compute' for every op family ({', '.join(FAMILIES)}) and "
                "'efficiency.memory', or run `hwcost calibrate` on the device"
            )
        defaults = {"compute": {}, "memory": eff["memory"]}
    compute_eff = dict(defaults["compute"])
    compute_eff.update(eff.get("compute") or {})
    startup = {k: float(v) for k, v in (defaults.get("startup_dispatches") or {}).items()}
    startup.update({k: float(v) for k, v in (eff.get("startup_dispatches") or {}).items()})
    if d.get("grouped_conv") == "per_group" and not defaults.get("per_group_conv"):
        raise ProfileError(f"{where}: 'grouped_conv: per_group' has costs for kind 'cpu' only "
                           f"(device_profiles/_defaults.yaml), not {d['kind']!r}")
    matrix = {k: float(v) for k, v in d["compute"]["matrix_tflops"].items()}
    vector = {k: float(v) for k, v in (d["compute"].get("vector_tflops") or matrix).items()}
    return DeviceProfile(
        name=d["name"],
        kind=d["kind"],
        description=d["description"],
        execution=d["execution"],
        launch_blocking=d.get("launch") == "blocking",
        grouped_conv_per_group=d.get("grouped_conv") == "per_group",
        per_group_conv={k: float(v) for k, v in (defaults.get("per_group_conv") or {}).items()},
        matrix_tflops=matrix,
        vector_tflops=vector,
        tf32_tflops=d["compute"].get("tf32_tflops"),
        bandwidth_gbps=float(d["memory"]["bandwidth_gbps"]),
        capacity_gb=d["memory"].get("capacity_gb"),
        reserved_gb=float(d["memory"].get("reserved_gb") or 0.0),
        cache_mb=d["memory"].get("cache_mb"),
        host_per_op_us=float(d["overhead_us"]["host_per_op"]),
        device_per_op_us=float(d["overhead_us"].get("device_per_op", 0.0)),
        module_call_us=float(d["overhead_us"].get("per_module_call", 0.0)),
        view_us=float(d["overhead_us"].get("per_view", 0.0)),
        power_idle_w=_opt(d, "power_w", "idle"),
        power_typical_w=_opt(d, "power_w", "typical"),
        power_max_w=_opt(d, "power_w", "max"),
        pj_per_flop=_opt(d, "energy", "pj_per_flop"),
        pj_per_byte=_opt(d, "energy", "pj_per_byte"),
        compute_efficiency=compute_eff,
        memory_efficiency=float(eff.get("memory", defaults["memory"])),
        startup_dispatches=startup,
        threads=d.get("threads"),
        isa=d.get("isa"),
        generate_step_us=_opt(d, "overhead_us", "per_generate_step"),
        generate_step_per_1k_vocab_us=_opt(d, "overhead_us", "per_generate_step_per_1k_vocab"),
        generate_call_us=_opt(d, "overhead_us", "per_generate_call"),
        transformers_call_us=float(d["overhead_us"].get("per_transformers_call") or 0.0),
        transformers_forward_us=float(d["overhead_us"].get("per_transformers_forward") or 0.0),
        transformers_call_cached_us=_opt(d, "overhead_us", "per_transformers_call_cached"),
        transformers_forward_cached_us=_opt(d, "overhead_us", "per_transformers_forward_cached"),
        sources={str(k): str(v) for k, v in d["sources"].items()},
        calibration=d.get("calibration"),
        path=where,
    )


# the resource readings calibration takes at its start and end (resources.resource_rates), by key
RESOURCES = {"compute_gflops": "compute", "cache_gbps": "last-level-cache bandwidth", "dram_gbps": "DRAM bandwidth"}


def calibration_rates(calibration: dict | None) -> dict[str, float]:
    """The resource rates a calibrated profile recorded (mean of its start and end readings)."""
    p = (calibration or {}).get("probe") or {}
    out = {}
    for key in RESOURCES:
        vals = [p[when][key] for when in ("start", "end") if (p.get(when) or {}).get(key)]
        if vals:
            out[key] = sum(vals) / len(vals)
    return out
