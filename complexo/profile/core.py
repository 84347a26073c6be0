"""The profiler's common ground: the device and its ceilings (datasheet or calibration), the
clock, what a run records (:class:`Profile`, :class:`SidesProfile`) and where it is saved, the
one entry point :func:`run`, and ``complexo calibrate``."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import statistics
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from complexo import progress
from complexo.errors import ComplexoError
from complexo.profile.machine import check_threads, iqr, threads_set

# The default folder of every ``root`` below: resolved when used (see :func:`folder`) to the
# checkout's profiles/, $COMPLEXO_HOME/profiles or the user's data folder, never the cwd's.
PROFILES = Path("profiles")

# Loop counts: more would run for hours, not measure better.
MAX_WARMUP = 1000
MAX_REPEAT = 10_000


MODES = ("forward", "train")


@dataclass(frozen=True)
class Ceilings:
    device: str
    peak: dict[str, float]  # dtype -> FLOP/s
    bandwidth: float  # bytes/s
    source: str  # a datasheet, or "calibrated <date>"


def device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name()
    try:  # Linux names the CPU model; a calibration belongs to that model, not to "x86_64"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def folder(root: Path) -> Path:
    """``root``, or where recordings live (:func:`complexo.home.profiles`) for the default."""
    if root is PROFILES:
        from complexo import home

        return home.profiles()
    return root


def resolve_device(requested: str | None) -> str:
    if requested is not None and requested not in ("cuda", "cpu"):
        raise ComplexoError(f"unknown --device '{requested}'; choose from: cuda, cpu")
    import torch

    device = requested or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cuda", "cpu"):
        raise ComplexoError(f"unknown --device '{device}'; choose from: cuda, cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ComplexoError(
            "--device cuda: no CUDA device here (torch.cuda.is_available() is False)"
        )
    return device


def ceilings(device: str, root: Path = PROFILES) -> Ceilings | None:
    """The datasheet's numbers for a known GPU, else a saved calibration, else None."""
    from complexo.devices import DEVICES

    name = device_name(device)
    known = _datasheet_match(name)
    if known is not None:
        d = DEVICES[known]
        return Ceilings(
            known, {k: float(v) for k, v in d.peak.items()}, float(d.bandwidth), d.source
        )
    path = calibration_path(name, root)
    if path.exists():
        try:
            doc = json.loads(path.read_text())
            return Ceilings(name, doc["peak"], doc["bandwidth"], f"calibrated {doc['date']}")
        except (ValueError, KeyError, TypeError) as err:
            raise ComplexoError(
                f"{path} is not a calibration ({_why(err)}): run complexo calibrate again"
            ) from None
    return None


def calibration_path(name: str, root: Path = PROFILES) -> Path:
    """Where ``complexo calibrate`` keeps a device's ceilings: <root>/<device>/calibration.json."""
    return folder(root) / slug(name) / "calibration.json"


def _datasheet_match(name: str) -> str | None:
    n = name.lower()
    rules = [
        ("h200", "h200"),
        ("h100", "h100-pcie" if "pcie" in n else "h100-sxm"),
        ("a100", "a100-40gb" if "40gb" in n else "a100-80gb"),
        ("l40s", "l40s"),
        (" l4", "l4"),
        ("4090", "rtx-4090"),
    ]
    return next((table for key, table in rules if key in f" {n}"), None)


def timer(device: str):
    """A function timing ``fn`` once, in seconds: CUDA events around it (synchronised), or the
    host's monotonic clock on CPU."""
    import torch

    if device == "cuda":

        def cuda_time(fn) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3

        return cuda_time

    def host_time(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return host_time


@dataclass
class Profile:
    analysis: str
    config: dict
    mode: str
    device: str
    device_name: str
    dtype: str
    torch: str
    cuda: str | None
    date: str
    times: list[float]  # seconds per iteration
    flops: int  # the formula's FLOPs per iteration
    memory_predicted: int  # bytes, the formula's
    memory_peak: int | None  # bytes allocated at peak (CUDA's allocator; CPU's allocation record)
    memory_reserved: int | None = None  # bytes the caching allocator held at peak (CUDA)
    timing: str = "eager"  # or "cuda-graph": replays of one captured call
    by_term: dict[str, dict] = field(default_factory=dict)  # measured s, predicted s, FLOPs, bytes
    ceilings: dict | None = None
    notes: list[str] = field(default_factory=list)
    kernels: list = field(default_factory=list)  # [name, seconds]: the top kernels, one iteration
    predicted_s: float | None = None  # the roofline's floor for the timed iteration
    outside: dict | None = None  # the profiled time no term accounts for, and where it went
    threads: int | None = None  # torch's intra-op threads during the runs
    load: float | None = None  # the machine's one-minute load average as the runs began
    # how many runs of each kind were made: warm-up, timed, profiled, and where the CPU's
    # memory pass ran ("the last warm-up", or "after the timed runs")
    runs: dict | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def achieved(self) -> float:
        return self.flops / self.median

    def to_json(self) -> dict:
        doc = asdict(self)
        doc["median_s"], doc["achieved_flops_per_s"] = self.median, self.achieved
        doc["iqr_s"] = iqr(self.times)
        if self.ceilings:
            doc["fraction_of_peak"] = self.achieved / self.ceilings["peak"][self.dtype]
        return doc

    @classmethod
    def from_json(cls, doc: dict) -> Profile:
        """A saved profile back (the figures :meth:`to_json` derives are derived again)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})

    def save(self, root: Path = PROFILES) -> list[Path]:
        """Write it under ``root/<device>/``; the files written."""
        where = folder(root) / slug(self.device_name)
        where.mkdir(parents=True, exist_ok=True)
        keys = "-".join(f"{k}{v}" for k, v in self.config.items() if v not in (None, False))
        path = where / f"{self.analysis}-{self.mode}-{slug(keys)}.json"
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return [path]


@dataclass(frozen=True)
class Timing:
    """Seconds per timed call, and on CUDA the peak bytes allocated and reserved over them."""

    times: list[float]
    peak: int | None
    reserved: int | None


def timed(step, device: str, warmup: int, repeat: int, *, graph: bool = False, last=None) -> Timing:
    """Time ``step`` ``repeat`` times after ``warmup`` untimed calls. ``graph``: capture one
    call in a CUDA graph and time its replays instead, which takes the CPU's kernel launches
    out of the measurement (what small shapes are dominated by). ``last``: a call that runs
    the step in place of the last warm-up (a measuring pass: it costs no run of its own)."""
    import torch

    clock = timer(device)
    if graph:
        if device != "cuda":
            raise ComplexoError("--cuda-graph needs --device cuda")
        side = torch.cuda.Stream()  # warm up on a side stream, as capture requires
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(max(warmup, 3)):
                step()
        torch.cuda.current_stream().wait_stream(side)
        captured = torch.cuda.CUDAGraph()
        with torch.cuda.graph(captured):
            step()
        step, warmup = captured.replay, 1
    with progress.task("warming up", total=warmup) as advance:
        for i in range(warmup):
            (last if last is not None and i == warmup - 1 else step)()
            advance()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    with progress.task("timing", total=repeat) as advance:
        for _ in range(repeat):
            times.append(clock(step))
            advance()
    if device != "cuda":
        return Timing(times, None, None)
    return Timing(times, torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved())


@dataclass
class SidesProfile:
    """Both sides of a two-sided analysis run for real, each a :class:`Profile` (the first is
    the baseline), and the second's time and FLOPs as fractions of the first's."""

    analysis: str
    sides: dict[str, Profile]
    notes: list[str] = field(default_factory=list)

    @property
    def pair(self) -> tuple[Profile, Profile]:
        first, second = list(self.sides.values())[:2]
        return first, second

    @property
    def time_ratio(self) -> float:
        base, other = self.pair
        return other.median / base.median

    @property
    def flops_ratio(self) -> float:
        base, other = self.pair
        return other.flops / base.flops

    def to_json(self) -> dict:
        return {
            "analysis": self.analysis,
            "sides": {side: prof.to_json() for side, prof in self.sides.items()},
            "time_ratio": self.time_ratio,
            "flops_ratio": self.flops_ratio,
            "notes": self.notes,
        }

    def save(self, root: Path = PROFILES) -> list[Path]:
        return [path for prof in self.sides.values() for path in prof.save(root)]


def run(
    analysis,
    cfg,
    *,
    device: str | None = None,
    mode: str | None = None,
    warmup: int | None = None,
    repeat: int | None = None,
    trace: str | None = None,
    cuda_graph: bool = False,
    threads: int | None = None,
    root: Path = PROFILES,
):
    """Profile a registered analysis (:class:`~complexo.registry.Analysis`) at ``cfg``: the one
    entry point of ``complexo profile`` and of every analysis command's ``--profile``.
    ``warmup``, ``repeat``: the profiler's own default (fewer for whole-model steps) unless
    given. ``threads``: torch's intra-op threads for the run (default: what torch picks)."""
    how = analysis.profiling
    modes = how.modes
    mode = modes[0] if mode is None else mode
    check_count("--warmup", warmup, 0, MAX_WARMUP)
    check_count("--repeat", repeat, 1, MAX_REPEAT)
    check_threads(threads)
    if trace is not None:
        from complexo.paths import check_output

        check_output(trace, "--trace")
    if device is not None:
        resolve_device(device)
    if mode not in MODES:
        raise ComplexoError(f"unknown --mode '{mode}'; choose from: {', '.join(MODES)}")
    if mode not in modes:
        raise ComplexoError(
            f"complexo profile {analysis.name} runs --mode {' or '.join(modes)}, not {mode}"
        )
    if cuda_graph and not how.cuda_graph:
        from complexo.analyses import ANALYSES

        graphed = [a.name for a in ANALYSES.values() if a.profiling and a.profiling.cuda_graph]
        listed = ", ".join(graphed[:-1]) + " and " + graphed[-1] if len(graphed) > 1 else graphed[0]
        raise ComplexoError(f"--cuda-graph times {listed} forward passes, not {analysis.name}")
    runs = {"device": device, "trace": trace, "warmup": warmup, "repeat": repeat}
    with threads_set(threads), progress.task(f"profiling {analysis.name}"):
        if how.run is not None:  # a profile of its own: the analyses it compares, each profiled
            return how.run(cfg, **{k: v for k, v in runs.items() if v is not None})
        from complexo.profile.step import profile_side

        runs |= {"mode": mode, "cuda_graph": cuda_graph, "root": root}
        if not analysis.sides:
            return profile_side(analysis, cfg, **runs)
        sides = {side: profile_side(analysis, cfg, side=side, **runs) for side in analysis.sides}
        return SidesProfile(analysis.name, sides)


def check_count(name: str, value: int | None, low: int, high: int) -> None:
    """A loop count within [low, high] (None: the default)."""
    if value is not None and not low <= value <= high:
        raise ComplexoError(f"{name} takes {low} to {high:,} runs, got {value}")


def refuse_if_too_big(predicted: int, device: str, what: str, hint: str) -> None:
    """Refuse, before allocating anything, a run whose predicted memory exceeds 90% of the
    device's free memory; ``hint`` says what to shrink."""
    free = free_memory(device)
    if predicted > 0.9 * free:
        from complexo.units import human

        raise ComplexoError(
            f"{what} needs about {human(predicted, 'byte')} and {device} has "
            f"{human(free, 'byte')} free: refused before allocating (try {hint})"
        )


def _record(analysis, cfg, mode, device, timing: Timing, flops, predicted, roof) -> Profile:
    """A Profile of one configuration's runs, with what it ran on and when."""
    import torch

    return Profile(
        analysis,
        dict(cfg.__dict__),
        mode,
        device,
        device_name(device),
        cfg.dtype,
        torch.__version__,
        torch.version.cuda if device == "cuda" else None,
        datetime.date.today().isoformat(),
        timing.times,
        flops,
        predicted,
        timing.peak,
        timing.reserved,
        ceilings=asdict(roof) if roof else None,
    )


def free_memory(device: str) -> int:
    import torch

    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return free
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not Linux: no check beyond the allocator's
        return 1 << 62


def _why(err: Exception) -> str:
    if isinstance(err, KeyError):
        return f"no {err.args[0]!r}"
    return str(err).split("\n", 1)[0] or type(err).__name__
