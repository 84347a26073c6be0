"""Real runs of a reference block: time (CUDA events, or the host clock on CPU), a torch.profiler
trace grouped by the formula's terms, peak memory against the memory formula, achieved FLOP/s,
and a roofline prediction per term from FLOPs and the fewest bytes each term must move.

Roofline: a term needs at least max(FLOPs / peak FLOP/s, bytes / bandwidth) seconds. The device
ceilings come from the datasheet table (:mod:`complexo.devices`) or, on a device not in it
(a CPU), from ``complexo calibrate``'s measurement, saved under ``profiles/<device>/``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import statistics
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from complexo.cost import Kind, evaluate
from complexo.errors import ComplexoError

PROFILES = Path("profiles")
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


def resolve_device(requested: str | None) -> str:
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
        doc = json.loads(path.read_text())
        return Ceilings(name, doc["peak"], doc["bandwidth"], f"calibrated {doc['date']}")
    return None


def calibration_path(name: str, root: Path = PROFILES) -> Path:
    """Where ``complexo calibrate`` keeps a device's ceilings: <root>/<device>/calibration.json."""
    return root / slug(name) / "calibration.json"


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

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def achieved(self) -> float:
        return self.flops / self.median

    def to_json(self) -> dict:
        doc = asdict(self)
        doc["median_s"], doc["achieved_flops_per_s"] = self.median, self.achieved
        q1, _, q3 = statistics.quantiles(self.times, n=4) if len(self.times) > 1 else (0, 0, 0)
        doc["iqr_s"] = q3 - q1
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
        folder = root / slug(self.device_name)
        folder.mkdir(parents=True, exist_ok=True)
        keys = "-".join(f"{k}{v}" for k, v in self.config.items() if v not in (None, False))
        path = folder / f"{self.analysis}-{self.mode}-{slug(keys)}.json"
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return [path]


@dataclass(frozen=True)
class Timing:
    """Seconds per timed call, and on CUDA the peak bytes allocated and reserved over them."""

    times: list[float]
    peak: int | None
    reserved: int | None


def timed(step, device: str, warmup: int, repeat: int, *, graph: bool = False) -> Timing:
    """Time ``step`` ``repeat`` times after ``warmup`` untimed calls. ``graph``: capture one
    call in a CUDA graph and time its replays instead, which takes the CPU's kernel launches
    out of the measurement (what small shapes are dominated by)."""
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
    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = [clock(step) for _ in range(repeat)]
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


def profile_lora(
    cfg,
    *,
    device: str | None = None,
    warmup: int = 2,
    repeat: int = 5,
    trace: str | None = None,
    root: Path = PROFILES,
) -> SidesProfile:
    """Full fine-tuning's and LoRA's training steps for real (forward, backward, the configured
    optimizer; under mixed precision on fp32 master copies of the trained weights, as the memory
    formula assumes): time per step and per phase beside each side's FLOPs, bytes and memory."""
    import torch

    from complexo.analyses import lora

    device = resolve_device(device)
    _check_runs(warmup, repeat)
    roof = ceilings(device, root)
    sides = {}
    for side in lora.SIDES:
        model, values = lora.cost_model(cfg, side), cfg.values
        memory = evaluate(model.total((Kind.MEMORY, Kind.ACTIVATION)), values)
        refuse_if_too_big(memory, device, f"the {side} step", "a smaller --seq or --batch")
        torch.manual_seed(0)
        module, inputs = lora.build(cfg, side, device=device)
        for m in module.modules():  # a trained adapter, not B = 0 (the work is the same)
            if hasattr(m, "lora_B"):
                torch.nn.init.normal_(m.lora_B.weight, std=1e-3)
        step = _training_step(module, inputs, cfg.optimizer, cfg.master_fp32)
        timing = timed(step, device, warmup, repeat)
        profiled = _profiled(step, device, _side_path(trace, side))
        phases = _lora_phases(model, values)
        flops = sum(f for f, _ in phases.values() if f is not None)
        prof = _record("lora", cfg, "train", device, timing, flops, memory, roof)
        prof.config["side"] = side
        prof.kernels = profiled.top
        _peak_memory(prof, step, [*module.parameters(), *module.buffers(), *inputs])
        prof.by_term = _timed_phases(phases, profiled, roof, cfg.dtype)
        prof.predicted_s = _total_floor(prof.by_term.values())
        prof.notes.append(
            "per phase: its FLOPs (matrix products) and fewest bytes: the forward reads every "
            "weight once, the backward reads the saved activations and the weights again and "
            "writes the gradients, the optimizer reads and writes its state and the trained "
            "weights and reads the gradients"
        )
        _common_notes(prof, roof)
        sides[side] = prof
    return SidesProfile("lora", sides)


def _side_path(trace: str | None, side: str) -> str | None:
    """trace.json -> trace-full.json, trace-lora.json: one trace per side."""
    if trace is None:
        return None
    path = Path(trace)
    return str(path.with_name(f"{path.stem}-{side}{path.suffix}"))


def _training_step(module, inputs, optimizer: str, master_fp32: bool, lr: float = 1e-6):
    """One training step of ``module`` in phases (:func:`_phased_step`). With ``master_fp32``
    the optimizer steps fp32 copies of the trained weights (gradients cast up, weights copied
    back down), as mixed-precision training does."""
    import torch

    trained = [p for p in module.parameters() if p.requires_grad]
    make = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    if not master_fp32:
        return _phased_step(lambda: module(*inputs), make[optimizer](trained, lr=lr))
    masters = [p.detach().float() for p in trained]

    def cast_up():
        for master, p in zip(masters, trained, strict=True):
            master.grad, p.grad = p.grad.float(), None

    @torch.no_grad()
    def copy_down():
        for master, p in zip(masters, trained, strict=True):
            p.copy_(master)

    opt = make[optimizer](masters, lr=lr)
    return _phased_step(lambda: module(*inputs), opt, before=cast_up, after=copy_down)


def _lora_phases(model, values) -> dict[str, tuple[int, int]]:
    """forward, backward, optimizer: (FLOPs, the fewest bytes each moves)."""
    from complexo.symbols import e

    weights = evaluate(model.total(Kind.MEMORY, tag="weights"), values)
    grads = evaluate(model.total(Kind.MEMORY, tag="gradients"), values)
    state = evaluate(model.total(Kind.MEMORY, tag="optimizer"), values)  # + fp32 masters
    trained = evaluate(model.total(Kind.PARAMS, tag="trainable"), values) * values[e]
    saved = evaluate(model.total(Kind.ACTIVATION), values)
    return {
        "forward": (evaluate(model.total(Kind.FORWARD), values), weights),
        "backward": (evaluate(model.total(Kind.BACKWARD), values), saved + weights + grads),
        "optimizer": (None, 2 * state + grads + 2 * trained),  # element-wise: not counted
    }


def _sgd_phases(forward: int, moved: int, backward: int, saved: int, weights: int) -> dict:
    """An SGD step's phases, (FLOPs, fewest bytes) each: the forward moves ``moved``; the
    backward reads what was saved and the weights and writes the weights' gradients; SGD keeps
    no state: it reads the weights and their gradients and writes the weights."""
    return {
        "forward": (forward, moved),
        "backward": (backward, saved + 2 * weights),
        "optimizer": (None, 3 * weights),  # element-wise: not counted
    }


def _timed_phases(phases: dict, profiled, roof: Ceilings | None, dtype: str) -> dict[str, dict]:
    """The phases' rows (:func:`_phase_rows`) with their time in one profiled iteration, from
    the complexo::<phase> ranges of :func:`_phased_step`."""
    rows = _phase_rows(phases, roof, dtype)
    for name, row in rows.items():
        row["measured_s"] = profiled.by_op.get(f"complexo::{name}", 0.0)
        row["share"] = profiled.share(row["measured_s"])
    return rows


def _floor(flops: int, moved: int, roof: Ceilings | None, dtype: str) -> dict:
    """The roofline's floor, max(FLOPs / peak, bytes / bandwidth), and which bound sets it;
    nothing without ceilings."""
    if roof is None:
        return {}
    compute, memory = flops / roof.peak[dtype], moved / roof.bandwidth
    return {
        "predicted_s": max(compute, memory),
        "bound": "compute" if compute > memory else "memory",
    }


def _total_floor(rows) -> float | None:
    """The roofline's floor of an iteration: the sum of its terms' floors (None unless every
    term has one)."""
    rows = list(rows)
    if not rows or any("predicted_s" not in r for r in rows):
        return None
    return sum(r["predicted_s"] for r in rows)


def _phase_rows(phases: dict, roof: Ceilings | None, dtype: str) -> dict[str, dict]:
    """Rows of (FLOPs, fewest bytes) per phase, with the roofline's floor where known. FLOPs
    None: not counted (the optimizer's element-wise update, O(parameters)): its floor is its
    bytes'."""
    out = {}
    for name, (flops, moved) in phases.items():
        row = {
            "flops": flops,
            "bytes": moved,
            "intensity": flops / moved if flops is not None and moved else None,
            "ops": [f"complexo::{name}"],
        }
        out[name] = row | _floor(flops or 0, moved, roof, dtype)
    return out


def _phased_step(forward, opt, *, before=None, after=None):
    """A training step in profiler ranges complexo::forward, ::backward (from the output's sum)
    and ::optimizer, which runs ``before``, the optimizer's step, then ``after``."""
    import torch

    record = torch.profiler.record_function

    def step():
        opt.zero_grad(set_to_none=True)
        with record("complexo::forward"):
            out = forward()
        with record("complexo::backward"):
            out.sum().backward()
        with record("complexo::optimizer"):
            if before:
                before()
            opt.step()
            if after:
                after()

    step.optimizer = opt  # what _peak_memory counts as given: its parameters and state
    return step


def _graph_note(prof: Profile, cuda_graph: bool) -> None:
    if cuda_graph:
        prof.timing = "cuda-graph"
        prof.notes.append(
            "timed as replays of one captured CUDA graph (no kernel launches from the CPU); "
            "the per-term times come from one eager profiled iteration"
        )


def _check_runs(warmup: int, repeat: int, mode: str = "forward", cuda_graph: bool = False) -> None:
    """One line for every option a profiler refuses."""
    if mode not in MODES:
        raise ComplexoError(f"unknown --mode '{mode}'; choose from: {', '.join(MODES)}")
    if warmup < 0 or repeat < 1:
        raise ComplexoError("--warmup must be ≥ 0 and --repeat ≥ 1")
    if cuda_graph and mode != "forward":
        raise ComplexoError("--cuda-graph times forward passes: use it with --mode forward")


def _peak_memory(prof: Profile, step, given) -> None:
    """On a CPU, a step's peak bytes: the storages it was given (weights, buffers, inputs; for
    a training step, from :func:`_phased_step`, its optimizer's parameters and state, without
    gradients) and the most it allocated beyond them (:func:`measure.cpu_peak_bytes`). On any
    device, a training step's note on how its peak departs from the formula's sum."""
    import torch

    from complexo.measure import cpu_peak_bytes, storage_bytes

    opt = getattr(step, "optimizer", None)
    if opt is not None:
        prof.notes.append(
            "training memory: the formula adds weights, gradients, optimizer state and every "
            "saved activation as if all were live at once; the backward frees activations as "
            "it allocates gradients, which keeps the peak below that sum, and holds temporaries "
            "of its own (the naive attention's n×n gradients, the logits' gradient), which push "
            "it above"
        )
    if prof.device != "cpu":
        return
    if opt is not None:  # the step allocates its gradients; state persists from earlier steps
        opt.zero_grad(set_to_none=True)
        given = [*given, *(p for group in opt.param_groups for p in group["params"])]
        given += [t for state in opt.state.values() for t in state.values() if torch.is_tensor(t)]
    prof.memory_peak = storage_bytes(given) + cpu_peak_bytes(step)
    prof.notes.append(
        "peak memory on CPU: the tensors given to the block and the most it allocated beyond "
        "them, from the profiler's record of every allocation and free (scratch space that an "
        "op frees before it returns is not seen)"
    )


def _common_notes(prof: Profile, roof: Ceilings | None) -> None:
    if roof is None:
        prof.notes.append(
            f"{prof.device_name} is not in the datasheet table and not calibrated: no roofline "
            "(run complexo calibrate)"
        )
    elif prof.dtype in roof.peak and prof.achieved > roof.peak[prof.dtype]:
        again = " (re-run complexo calibrate)" if roof.source.startswith("calibrated") else ""
        prof.notes.append(
            f"achieved {prof.achieved / roof.peak[prof.dtype]:.0%} of the peak ({roof.source}): "
            f"that ceiling is below what this work reaches here, so the floors are too high{again}"
        )
    if prof.memory_peak is None:
        prof.notes.append(
            "peak memory: not measured (on CUDA it is the allocator's peak; on a CPU, the "
            "profiler's allocation record)"
        )


def profile_kvcache(
    cfg,
    *,
    device: str | None = None,
    warmup: int = 3,
    repeat: int = 10,
    trace: str | None = None,
    root: Path = PROFILES,
) -> Profile:
    """Decode one token with the KV cache for real, at ``cfg.context`` tokens already cached;
    beside it, the same token without a cache (the whole prefix again) and the prefill that
    fills the cache. Each phase's time against its FLOPs and the fewest bytes it moves: decoding
    reads every weight and the whole cache for one token, so its floor is bytes / bandwidth."""
    import torch

    from complexo.analyses import kvcache
    from complexo.blocks.transformer import KVCache
    from complexo.conventions import DTYPES, torch_dtype

    device = resolve_device(device)
    _check_runs(warmup, repeat)
    model, _, _ = kvcache.cost_model(cfg.spec, cfg.dtype)
    values, spec, N = cfg.values, cfg.spec, cfg.context

    def total(kind, tag):
        return evaluate(model.total(kind, tag=tag), values)

    logits = cfg.batch * (N + 1) * spec.vocab * DTYPES[cfg.weight_dtype].bytes  # no cache's
    predicted = total(Kind.MEMORY, "weights") + total(Kind.MEMORY, "cache")  # while decoding
    refuse_if_too_big(predicted + logits, device, "this run", "a smaller --context or --batch")
    torch.manual_seed(0)
    net = kvcache.build(cfg, device=device)
    cache_dtype = torch.int8 if cfg.dtype == "int8" else torch_dtype(cfg.weight_dtype)
    cache = KVCache(spec, cfg.batch, N + 1, cache_dtype, device=device)
    prefix = torch.randint(0, spec.vocab, (cfg.batch, N + 1), device=device)
    record = torch.profiler.record_function
    phases = {
        # the cache holds positions 0 .. N-1; each decode step writes position N again
        "decode": lambda: net(prefix[:, N:], cache=cache, pos=N),
        "no cache": lambda: net(prefix),
        "prefill": lambda: net(prefix[:, :N], cache=cache, pos=0),
    }

    def ranged(name, run):
        def step():
            with record(f"complexo::{name}"):
                run()

        return step

    steps = {name: ranged(name, run) for name, run in phases.items()}
    with torch.no_grad():
        phases["prefill"]()
        runs = {name: timed(step, device, warmup, repeat) for name, step in steps.items()}
        roof = ceilings(device, root)
        profiled = _profiled(lambda: [step() for step in steps.values()], device, trace)
    decode = total(Kind.FORWARD, "decode")
    prof = _record("kvcache", cfg, "forward", device, runs["decode"], decode, predicted, roof)
    prof.kernels = profiled.top
    prof.dtype = cfg.weight_dtype
    with torch.no_grad():
        given = [*net.parameters(), *net.buffers(), *cache.tensors(), prefix]
        _peak_memory(prof, phases["decode"], given)
    flops = {"decode": "decode", "no cache": "no_cache", "prefill": "prefill"}
    moved = {
        "decode": total(Kind.MEMORY, "decode_bytes"),
        # the whole prefix again: every weight read once, the logits of n + 1 tokens written
        "no cache": total(Kind.MEMORY, "weights") + logits,
        "prefill": total(Kind.MEMORY, "prefill_bytes"),
    }
    rows = _phase_rows(
        {name: (total(Kind.FORWARD, flops[name]), moved[name]) for name in phases},
        roof,
        prof.dtype,
    )
    for name, row in rows.items():
        row["measured_s"] = statistics.median(runs[name].times)
        row["profiled_s"] = profiled.by_op.get(f"complexo::{name}", 0.0)
    prof.by_term = rows
    prof.predicted_s = rows["decode"].get("predicted_s")
    prof.notes.append(
        f"each phase timed on its own (median of {repeat}); decode: one token against "
        f"{N} cached; no cache: the {N + 1} tokens again; prefill: {N} tokens into the cache"
    )
    _common_notes(prof, roof)
    return prof


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
):
    """Profile a registered analysis (:class:`~complexo.registry.Analysis`) at ``cfg``: the one
    entry point of ``complexo profile`` and of every analysis command's ``--profile``.
    ``warmup``, ``repeat``: the profiler's own default (fewer for whole-model steps) unless
    given."""
    how = analysis.profiling
    modes = how.modes
    mode = mode or modes[0]
    if mode not in MODES:
        raise ComplexoError(f"unknown --mode '{mode}'; choose from: {', '.join(MODES)}")
    if mode not in modes:
        raise ComplexoError(
            f"complexo profile {analysis.name} runs --mode {' or '.join(modes)}, not {mode}"
        )
    if cuda_graph and not how.cuda_graph:
        from complexo.registry import ANALYSES

        graphed = [a.name for a in ANALYSES.values() if a.profiling and a.profiling.cuda_graph]
        listed = ", ".join(graphed[:-1]) + " and " + graphed[-1] if len(graphed) > 1 else graphed[0]
        raise ComplexoError(f"--cuda-graph times {listed} forward passes, not {analysis.name}")
    runs = {"device": device, "trace": trace}
    runs |= {k: v for k, v in (("warmup", warmup), ("repeat", repeat)) if v is not None}
    if len(modes) > 1:
        runs["mode"] = mode
    if how.cuda_graph:
        runs["cuda_graph"] = cuda_graph
    return how.run(cfg, **runs)


def refuse_if_too_big(predicted: int, device: str, what: str, hint: str) -> None:
    """Refuse, before allocating anything, a run whose predicted memory exceeds 90% of the
    device's free memory; ``hint`` says what to shrink."""
    free = free_memory(device)
    if predicted > 0.9 * free:
        from complexo.render import human

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


def profile_mhsa(
    cfg,
    *,
    device: str | None = None,
    mode: str = "forward",
    warmup: int = 3,
    repeat: int = 10,
    trace: str | None = None,
    root: Path = PROFILES,
    cuda_graph: bool = False,
) -> Profile:
    """Run the MHSA block for real and set the measurements beside the formulas.
    ``cuda_graph``: time replays of a captured CUDA graph (forward mode)."""
    import torch

    from complexo.analyses import mhsa
    from complexo.render import human

    device = resolve_device(device)
    _check_runs(warmup, repeat, mode, cuda_graph)
    model, values = cfg.model(), cfg.values
    kinds = (Kind.FORWARD,) if mode == "forward" else (Kind.FORWARD, Kind.BACKWARD)
    flops = evaluate(model.total(kinds), values)
    weights = evaluate(model.total(Kind.PARAMS), values) * values[mhsa.e]
    x_bytes = cfg.batch * cfg.seq * cfg.dim * values[mhsa.e]
    if mode == "train":  # x, its output, saved activations, gradients; SGD keeps no state
        predicted = 2 * weights + 2 * x_bytes + evaluate(model.total(Kind.ACTIVATION), values)
    else:  # what the block was given, and its high-water mark above that
        predicted = weights + x_bytes + mhsa.forward_peak(cfg)
    # n×n matrices: two coexist in the forward (each element-wise pass is out of place); the
    # probabilities are saved for the backward
    matrix = evaluate(model.total(Kind.MEMORY, tag="matrix"), values)
    scores = 2 * matrix if mode == "forward" else matrix
    hint = "a smaller --seq or --batch" + (
        f", or --impl sdpa: its n×n score matrices are {human(scores, 'byte')} of it"
        if not cfg.fused and scores > predicted / 2
        else ""
    )
    refuse_if_too_big(predicted, device, "this run", hint)
    torch.manual_seed(0)
    block, x = mhsa.build(cfg, device=device)
    x = x.detach().requires_grad_(mode == "train")
    if mode == "train":
        step = _phased_step(lambda: block(x), torch.optim.SGD(block.parameters(), lr=1e-6))
    else:

        def step():
            with torch.no_grad():
                block(x)

    timing = timed(step, device, warmup, repeat, graph=cuda_graph)
    profiled = _profiled(step, device, trace)
    roof = ceilings(device, root)
    prof = _record("mhsa", cfg, mode, device, timing, flops, predicted, roof)
    prof.kernels = profiled.top
    _peak_memory(prof, step, [*block.parameters(), x])
    _graph_note(prof, cuda_graph)
    # the terms' ops in the forward: in training, inside its range, not the backward's too
    ops = profiled.by_op if mode == "forward" else profiled.in_range.get("complexo::forward", {})
    prof.by_term = _by_term(mhsa.roofline_groups(cfg), ops, values, roof, cfg.dtype, mode)
    for row in prof.by_term.values():
        row["share"] = profiled.share(row["measured_s"])
    prof.predicted_s = _total_floor(prof.by_term.values())
    if mode == "forward":
        prof.outside = _outside(profiled, prof.by_term.values(), model.terms(Kind.FORWARD))
    if mode == "train":  # the terms above are the forward's; the step's phases as a whole
        phases = _sgd_phases(
            evaluate(model.total(Kind.FORWARD), values),
            sum(row["bytes"] for row in prof.by_term.values()),
            evaluate(model.total(Kind.BACKWARD), values),
            evaluate(model.total(Kind.ACTIVATION), values),
            weights,
        )
        rows = _timed_phases(phases, profiled, roof, cfg.dtype)
        prof.by_term |= {f"{name} (step)": row for name, row in rows.items()}
        prof.predicted_s = _total_floor(rows.values())
        prof.notes.append(
            "training: the terms' times are their ops' inside the forward's range; the phases "
            "(forward, backward, optimizer) are the whole step, timed by range"
        )
    _common_notes(prof, roof)
    return prof


TOP_KERNELS = 8
PROFILED_RUNS = 3  # profiled iterations, of which the tables show the median one
ITERATION = "complexo::iteration"  # the range around the whole profiled iteration


@dataclass(frozen=True)
class Profiled:
    """One profiled iteration: seconds per op name (or complexo:: range), the top kernels, and
    the iteration's total (its kernels' GPU time, or its CPU time), which the terms' shares
    are of."""

    by_op: dict[str, float]
    top: list
    total: float
    # per innermost complexo:: range around an op: its time as by_op counts it; and its own
    # time by (op, the ops it ran inside)
    in_range: dict[str, dict[str, float]] = field(default_factory=dict)
    own: dict[str, dict[tuple[str, frozenset[str]], float]] = field(default_factory=dict)
    callers: frozenset[str] = frozenset()  # ops that called other ops (own time = dispatch)

    def share(self, seconds: float) -> float | None:
        return seconds / self.total if self.total else None


def _profiled(step, device: str, trace: str | None, runs: int = PROFILED_RUNS) -> Profiled:
    """One profiled iteration, the median by total time of ``runs`` (one iteration's hiccup on
    a busy machine does not become a phase's time, and every figure still comes from one real
    iteration): seconds per op name, the top kernels by time. Times are device time on CUDA,
    self CPU time on CPU; a complexo:: range gets its whole time (the ops inside it). The top
    kernels are CUDA kernels on a GPU, the ops' own CPU time on a CPU."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from complexo.measure import quiet_profiler

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    profiles = []
    for _ in range(runs):
        with quiet_profiler(), profile(activities=activities, record_shapes=False) as prof:
            with torch.profiler.record_function(ITERATION):
                step()
            if device == "cuda":
                torch.cuda.synchronize()
        averages = prof.key_averages()
        total = next((e for e in averages if e.key == ITERATION), None)
        seconds = (
            (total.device_time_total if device == "cuda" else total.cpu_time_total) if total else 0
        )
        profiles.append((seconds, prof, averages))
    _, prof, averages = sorted(profiles, key=lambda p: p[0])[(runs - 1) // 2]
    if trace:
        prof.export_chrome_trace(trace)
    out: dict[str, float] = {}
    kernels: dict[str, float] = {}
    for evt in averages:
        ranged = evt.key.startswith("complexo::")
        if device == "cuda":
            us = evt.device_time_total
            if evt.device_type == DeviceType.CUDA:
                kernels[evt.key] = kernels.get(evt.key, 0.0) + evt.self_device_time_total / 1e6
        else:
            us = evt.cpu_time_total if ranged else evt.self_cpu_time_total
            if not ranged and us > 0:
                kernels[evt.key] = kernels.get(evt.key, 0.0) + us / 1e6
        out[evt.key] = out.get(evt.key, 0.0) + us / 1e6
    top = sorted(kernels.items(), key=lambda kv: -kv[1])[:TOP_KERNELS]
    total = out.pop(ITERATION, 0.0)
    events = prof.events()
    callers = frozenset(e.name for e in events if e.cpu_children)
    in_range, own = _by_range(events, device)
    return Profiled(out, [[k, s] for k, s in top], total, in_range, own, callers)


def _by_range(events, device: str):
    """Per innermost complexo:: range around each op: the op's time as ``by_op`` counts it
    (with its children's on CUDA, its own on CPU), so that a phase's ops are told from another
    phase's; and its own time (on CUDA the kernels it launched itself), so that time no term
    covers can be named op by op, keyed with the ops it ran inside."""
    from torch.autograd import DeviceType

    in_range: dict[str, dict] = {}
    own: dict[str, dict] = {}
    for evt in events:
        if evt.device_type != DeviceType.CPU or evt.name.startswith("complexo::"):
            continue
        parent, above = evt.cpu_parent, set()
        while parent is not None and not parent.name.startswith("complexo::"):
            above.add(parent.name)
            parent = parent.cpu_parent
        if parent is None:
            continue
        if device == "cuda":
            counted, itself = evt.device_time_total, evt.self_device_time_total
        else:
            counted = itself = evt.self_cpu_time_total
        for table, key, us in (
            (in_range, evt.name, counted),
            (own, (evt.name, frozenset(above)), itself),
        ):
            if us > 0:
                ops = table.setdefault(parent.name, {})
                ops[key] = ops.get(key, 0.0) + us / 1e6
    return in_range, own


def _outside(profiled: Profiled, rows, terms=()) -> dict:
    """The profiled iteration's time that the rows (a partition of its work) leave over, and
    the ops it went to that no row covers, largest first, each with the formula's forward terms
    that the op carries (none for copies and views: they move data but compute nothing; none for
    an op that calls others, such as aten::linear, whose own time is dispatch)."""
    rows = list(rows)
    covered = {op for row in rows for op in row["ops"]}
    left: dict[str, float] = {}
    for (op, above), s in profiled.own.get(ITERATION, {}).items():
        # nor inside a covered op: CUDA's SDPA launches its kernel from a child op
        if op not in covered and not above & covered:
            left[op] = left.get(op, 0.0) + s
    rest = max(profiled.total - sum(row["measured_s"] for row in rows), 0.0)
    ops = sorted(left.items(), key=lambda kv: -kv[1])
    return {
        "measured_s": rest,
        "share": profiled.share(rest),
        "ops": [
            [op, s, [] if op in profiled.callers else [t.name for t in terms if op in t.ops]]
            for op, s in ops
        ],
        "between_ops_s": max(rest - sum(s for _, s in ops), 0.0),
    }


def _by_term(groups, by_op, values, roof: Ceilings | None, dtype: str, mode: str) -> dict:
    out = {}
    for name, flops_expr, bytes_expr, ops in groups:
        flops, moved = evaluate(flops_expr, values), evaluate(bytes_expr, values)
        row = {
            "flops": flops,
            "bytes": moved,
            "intensity": flops / moved if moved else None,
            "measured_s": sum(by_op.get(op, 0.0) for op in ops),
            "ops": list(ops),
        }
        out[name] = row | (_floor(flops, moved, roof, dtype) if mode == "forward" else {})
    return out


# The 3×3 convolutions calibration tries per device, (batch, channels, side), smallest first: it
# takes the first whose call lasts CONV_CALL_S, so a dtype without a fast path stays quick.
CONV_SHAPES = {
    "cpu": ((1, 32, 32), (1, 64, 64), (1, 128, 64), (1, 256, 64)),
    "cuda": ((8, 256, 64), (32, 512, 64)),
}
CONV_CALL_S = 0.02


def _rate(run, flops: int, clock, first: float | None = None, repeat: int = 5) -> float:
    """FLOP/s of ``run``: the median of ``repeat`` timed calls after an untimed one; a call that
    already took over a second (a dtype without a fast path here) is measured once."""
    first = clock(run) if first is None else first
    if first > 1.0:
        return flops / first
    run()
    return flops / statistics.median(clock(run) for _ in range(repeat))


def calibrate(device: str | None = None, *, size: int | None = None, root: Path = PROFILES) -> dict:
    """Measure the present device's ceilings and save them for later runs: per dtype, the best
    FLOP/s of a large matrix product and of a 3×3 convolution (on a CPU the two go through
    different libraries, and the convolution can run twice as fast); a large device-to-device
    copy for the bandwidth."""
    import torch
    import torch.nn.functional as F

    device = resolve_device(device)
    clock = timer(device)
    n = size or (8192 if device == "cuda" else 1024)
    measured: dict[str, dict[str, float]] = {"matmul": {}, "convolution": {}}
    conv_shape = {}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        a = torch.randn(n, n, device=device, dtype=dt)
        b = torch.randn(n, n, device=device, dtype=dt)
        measured["matmul"][name] = _rate(lambda a=a, b=b: a @ b, 2 * n**3, clock)
        del a, b
        for i, (batch, c, side) in enumerate(CONV_SHAPES[device]):
            x = torch.randn(batch, c, side, side, device=device, dtype=dt)
            w = torch.randn(c, c, 3, 3, device=device, dtype=dt)

            def convolve(x=x, w=w):
                return F.conv2d(x, w, padding=1)

            convolve()  # the first call picks the algorithm
            took = clock(convolve)
            if took >= CONV_CALL_S or i == len(CONV_SHAPES[device]) - 1:
                flops = 2 * batch * c * c * 9 * side * side
                measured["convolution"][name] = _rate(convolve, flops, clock, first=took)
                conv_shape[name] = [batch, c, side]
                break
    elements = (256 if device == "cuda" else 32) * 2**20
    src = torch.empty(elements, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)
    t = statistics.median(clock(lambda: dst.copy_(src)) for _ in range(5))
    doc = {
        "device": device_name(device),
        "peak": {k: max(m[k] for m in measured.values()) for k in measured["matmul"]},
        "bandwidth": 2 * src.numel() * 4 / t,  # read and write
        "measured": measured,
        "matmul_side": n,
        "convolution_shape": conv_shape,  # [batch, channels, side], 3×3, stride 1, padding 1
        "copy_bytes": src.numel() * 4,
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
    }
    path = calibration_path(doc["device"], root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


# The options that tell one recorded profile from another in a listing or a report's table.
SHOWN_CONFIG = ("model", "side", "res", "batch", "seq", "context", "dim", "impl", "rank")


def shown_config(doc: dict, sep: str = ", ") -> str:
    """A saved profile's distinguishing options, ``key=value`` each (a batch of one goes
    without saying)."""
    config = doc["config"]
    shown = [k for k in SHOWN_CONFIG if config.get(k) and not (k == "batch" and config[k] == 1)]
    return sep.join(f"{k}={config[k]}" for k in shown)


def recorded(root: Path = PROFILES) -> list[dict]:
    """Every saved profile under ``root``, newest first."""
    docs = []
    for path in sorted(root.glob("*/*.json")):
        doc = json.loads(path.read_text())
        if "times" not in doc:  # a calibration, a sweep: not one profile
            continue
        doc["path"] = str(path)
        docs.append(doc)
    return sorted(docs, key=lambda d: d.get("date", ""), reverse=True)


@contextlib.contextmanager
def _module_ranges(module, groups: dict[str, str]):
    """A ``record_function`` range around every call of a leaf module whose type ``groups``
    names (type name -> group), named ``complexo::<group>``, so the profiler's time groups by
    what the formulas call terms."""
    import torch

    handles, open_ranges = [], []

    def pre(mod, _inputs):
        r = torch.profiler.record_function(f"complexo::{groups[type(mod).__name__]}")
        r.__enter__()
        open_ranges.append(r)

    def post(mod, _inputs, _output):
        open_ranges.pop().__exit__(None, None, None)

    for m in module.modules():
        if type(m).__name__ in groups:
            handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def profile_image(
    analysis: str,
    cfg,
    *,
    device: str | None = None,
    warmup: int = 3,
    repeat: int = 10,
    trace: str | None = None,
    root: Path = PROFILES,
    cuda_graph: bool = False,
    mode: str = "forward",
) -> Profile:
    """Time a CNN or ViT for real, inference (``mode`` forward) or training steps (forward,
    backward from the logits' sum, SGD): median time, achieved FLOP/s against the formula's
    FLOPs, time per layer type (and per phase in training) beside its FLOPs and fewest bytes,
    peak memory on CUDA."""
    import torch

    from complexo.analyses import cnn, vit
    from complexo.analyses.mhsa import SDPA_KERNELS
    from complexo.analyses.vision import LAYER_GROUPS

    module_of = {"cnn": cnn, "vit": vit}[analysis]
    device = resolve_device(device)
    _check_runs(warmup, repeat, mode, cuda_graph)
    train = mode == "train"
    model = cnn.cost_model(cnn.PRESETS[cfg.model].block) if analysis == "cnn" else vit.cost_model()
    values = cfg.values
    forward = evaluate(model.total(Kind.FORWARD), values)
    backward = evaluate(model.total(Kind.BACKWARD), values)
    flops = forward + (backward if train else 0)
    weights = evaluate(model.total(Kind.PARAMS), values) * values[cnn.e]
    saved = evaluate(model.total(Kind.ACTIVATION), values)
    # an upper bound: weights and every activation saved for a backward (+ gradients, SGD)
    predicted = weights + saved + (weights if train else 0)
    refuse_if_too_big(predicted, device, "this run", "a smaller --res or --batch")
    torch.manual_seed(0)
    net, x = module_of.build(cfg, device=device)
    net.train(train)
    if train:
        opt = torch.optim.SGD(net.parameters(), lr=1e-6)
        step = _phased_step(lambda: net(x), opt)
    else:

        def step():
            with torch.no_grad():
                net(x)

    timing = timed(step, device, warmup, repeat, graph=cuda_graph)
    with _module_ranges(net, LAYER_GROUPS):
        profiled = _profiled(step, device, trace)
    roof = ceilings(device, root)
    prof = _record(analysis, cfg, mode, device, timing, flops, predicted, roof)
    prof.kernels = profiled.top
    _peak_memory(prof, step, [*net.parameters(), *net.buffers(), x])
    _graph_note(prof, cuda_graph)
    if train:
        moved = evaluate(model.total(Kind.MEMORY, tag="moved"), values)
        phases = _sgd_phases(forward, moved, backward, saved, weights)
        rows = _timed_phases(phases, profiled, roof, cfg.dtype)
        prof.by_term |= {f"{name} (step)": row for name, row in rows.items()}
        prof.predicted_s = _total_floor(rows.values())
    ranges = {
        k.removeprefix("complexo::"): v
        for k, v in profiled.by_op.items()
        if k.startswith("complexo::") and k.removeprefix("complexo::") in LAYER_GROUPS.values()
    }
    terms = {t.name: evaluate(t.expr, values) for t in model.terms(Kind.FORWARD)}
    groups = {
        group: (
            seconds,
            sum(v for t, v in terms.items() if _group_of(analysis, t) == group),
            evaluate(model.total(Kind.MEMORY, tag=group), values),
        )
        for group, seconds in ranges.items()
    }
    if analysis == "vit":  # SDPA runs inside the attention module, outside every layer type
        attention = sum(terms[t] for t in ("attention", "scale", "softmax"))
        qkvo = 4 * values[vit.L] * values[vit.B] * cfg.tokens * values[vit.d] * values[cnn.e]
        seconds = max(profiled.by_op.get(k, 0.0) for k in SDPA_KERNELS)
        groups["attention kernel"] = (seconds, attention, qkvo)  # reads q, k, v; writes out
    for group, (seconds, group_flops, group_bytes) in sorted(
        groups.items(), key=lambda g: -g[1][0]
    ):
        row = {
            "measured_s": seconds,
            "share": profiled.share(seconds),
            "flops": group_flops,
            "bytes": group_bytes,
            "intensity": group_flops / group_bytes if group_bytes else None,
            "ops": list(SDPA_KERNELS) if group == "attention kernel" else [f"complexo::{group}"],
        }
        prof.by_term[group] = row | _floor(group_flops, group_bytes, roof, cfg.dtype)
    if not train:
        prof.predicted_s = _total_floor(prof.by_term[g] for g in groups)
        rows = (prof.by_term[g] for g in groups)
        prof.outside = _outside(profiled, rows, model.terms(Kind.FORWARD))
    prof.notes.append(
        "time per layer type from one profiled iteration (profiler ranges around each module "
        f"call{', in the forward' if train else ''}), beside its FLOPs and fewest bytes (each "
        "call reads its input and weights and writes its output once); memory predicted as an "
        "upper bound (weights + training activations"
        + (" + gradients; SGD keeps no state)" if train else ")")
    )
    _common_notes(prof, roof)
    return prof


def _group_of(analysis: str, term: str) -> str:
    """The layer type (profiler range) that carries a forward term of the image formulas."""
    if analysis == "cnn":
        if term == "stem" or term.startswith("layer"):
            return "convolutions"
        cnn_groups = {
            "batchnorm": "batchnorm",
            "relu": "relu",
            "maxpool": "pooling",
            "avgpool": "pooling",
            "fc": "linear layers",
            "fc_bias": "linear layers",
        }
        return cnn_groups.get(term, "other")
    vit_groups = {
        "patch_embed": "convolutions",
        "patch_bias": "convolutions",
        "attn_proj": "linear layers",
        "mlp": "linear layers",
        "bias": "linear layers",
        "head": "linear layers",
        "head_bias": "linear layers",
        "layernorm": "layernorm",
    }
    return vit_groups.get(term, "other")
