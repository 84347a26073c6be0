"""Real runs of a reference block: time (CUDA events, or the host clock on CPU), a torch.profiler
trace grouped by the formula's terms, peak memory against the memory formula, achieved FLOP/s,
and a roofline prediction per term from FLOPs and the fewest bytes each term must move.

Roofline: a term needs at least max(FLOPs / peak FLOP/s, bytes / bandwidth) seconds. The device
ceilings come from the datasheet table (:mod:`complexo.devices`) or, on a device not in it
(a CPU), from ``complexo calibrate``'s measurement, saved under ``profiles/<device>/``.

:mod:`.core`: the device, its ceilings, the clock, what a run records, :func:`run` and
calibration; :mod:`.records`: the saved profiles; :mod:`.trace`: one profiled iteration and the
rows read from it. Each analysis's own runner lives beside it
(``complexo/analyses/<name>_profile.py``), reached through :func:`run` and the registry.
"""

from complexo.profile.calibration import CONV_CALL_S, CONV_SHAPES, calibrate
from complexo.profile.core import (
    MODES,
    PROFILES,
    Ceilings,
    Profile,
    SidesProfile,
    Timing,
    calibration_path,
    ceilings,
    device_name,
    free_memory,
    refuse_if_too_big,
    resolve_device,
    run,
    slug,
    timed,
    timer,
)
from complexo.profile.records import SHOWN_CONFIG, recorded, shown_config
from complexo.profile.trace import ITERATION, PROFILED_RUNS, TOP_KERNELS, Profiled

__all__ = [
    "CONV_CALL_S",
    "CONV_SHAPES",
    "ITERATION",
    "MODES",
    "PROFILED_RUNS",
    "PROFILES",
    "SHOWN_CONFIG",
    "TOP_KERNELS",
    "Ceilings",
    "Profile",
    "Profiled",
    "SidesProfile",
    "Timing",
    "calibrate",
    "calibration_path",
    "ceilings",
    "device_name",
    "free_memory",
    "recorded",
    "refuse_if_too_big",
    "resolve_device",
    "run",
    "shown_config",
    "slug",
    "timed",
    "timer",
]
