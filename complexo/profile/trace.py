"""One profiled iteration (torch.profiler) and what is read from it: seconds per op and per
complexo:: range, the time no term accounts for, rows per term and per training phase with the
roofline's floor, peak memory, and the notes every profile carries."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from complexo.errors import ComplexoError
from complexo.profile.core import MODES, Ceilings, Profile

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


def memory_pass_peak(step, given) -> int:
    """A step's peak bytes on a CPU: the storages it was given (weights, buffers, inputs; for a
    training step, from :func:`_phased_step`, its optimizer's parameters and state, without
    gradients) and the most it allocated beyond them (:func:`measure.cpu_peak_bytes`). A
    training step must have run once before: its optimizer state persists from earlier steps."""
    import torch

    from complexo.measure import cpu_peak_bytes, storage_bytes

    opt = getattr(step, "optimizer", None)
    if opt is None:
        return storage_bytes(given) + cpu_peak_bytes(step)
    opt.zero_grad(set_to_none=True)  # the step allocates its gradients
    given = [*given, *(p for group in opt.param_groups for p in group["params"])]
    given += [t for state in opt.state.values() for t in state.values() if torch.is_tensor(t)]
    # saved tensors are freed inside autograd's nodes, which the per-op sums of cpu_peak_bytes
    # count at the node's start (before its own allocations): the raw record
    from complexo.peak import cpu_live_peak

    return storage_bytes(given) + cpu_live_peak(step)


def _peak_memory(prof: Profile, step, peak: int | None) -> None:
    """A step's peak bytes on a CPU (:func:`memory_pass_peak`, measured by the caller) into
    ``prof``, and on any device a training step's note on how its peak departs from the
    formula's sum."""
    if getattr(step, "optimizer", None) is not None:
        prof.notes.append(
            "training memory: the backward frees activations as it allocates gradients, which "
            "keeps the peak below the sum of weights, gradients, optimizer state and every saved "
            "activation, and holds temporaries of its own (the naive attention's n×n gradients, "
            "the logits' gradient), which push it above; a prediction from a ledger of lifetimes "
            "(complexo.peak) follows both, a sum of those four does not"
        )
    if prof.device != "cpu" or peak is None:
        return
    prof.memory_peak = peak
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


@contextlib.contextmanager
def _module_ranges(module, group):
    """A ``record_function`` range around every call of each submodule that ``group(name,
    submodule)`` names a group for, named ``complexo::<group>``, so the profiler's time groups
    by what the formulas call terms."""
    import torch

    handles, open_ranges = [], []

    def hooks(name: str):
        def pre(mod, _inputs):
            r = torch.profiler.record_function(f"complexo::{name}")
            r.__enter__()
            open_ranges.append(r)

        def post(mod, _inputs, _output):
            open_ranges.pop().__exit__(None, None, None)

        return pre, post

    for path, m in module.named_modules():
        name = group(path, m)
        if name:
            pre, post = hooks(name)
            handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
