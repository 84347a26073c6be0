"""A training step's memory as it really peaks: a ledger of what is allocated and freed, in
program order, whose running sum at each allocation is a sympy expression (a *moment*); the
step's peak is the largest moment, and the moment names the phase (forward, backward,
optimizer) and what is live then. The sum "weights + gradients + optimizer state + every saved
activation" treats all of them as live at once; the backward frees each activation once its
gradient is produced and holds temporaries of its own (gradients of activations, the n×n
matrices' gradients), and the ledger follows both.

An analysis writes its ledger by reading its reference module line by line (what each op
allocates, when Python or autograd lets go of it); :func:`tracked_step` measures the same step
with torch's MemTracker under FakeTensorMode (nothing allocated, so at any size), op by op,
which the tests hold the ledger to, and the CPU profiler's record checks both at small sizes.

Conventions: bytes of tensor storages (e bytes per element of the block's dtype, 1 per bool,
8 per int64); the step is ``zero_grad(set_to_none)``, ``out = forward()``, ``out.sum()
.backward()``, ``optimizer.step()`` (:func:`complexo.profile.trace._phased_step`), so the output
stays alive through the backward; what the step is given (weights, inputs, optimizer state from
earlier steps) is live throughout.

>>> from sympy import Symbol
>>> x = Symbol("x")
>>> book = Ledger(weights=10)
>>> book.alloc("two activations", a=x, b=2 * x)
>>> book.free("a")
>>> book.phase = "backward"
>>> book.alloc("a gradient", g=3)
>>> [str(mo.expr) for mo in book.moments]
['3*x + 10', '2*x + 13']
>>> best = peak(book.moments, {x: 1})
>>> best.bytes, best.phase, best.what
(15, 'backward', 'a gradient')
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sympy

PHASES = ("forward", "backward", "optimizer")


@dataclass(frozen=True)
class Moment:
    """The bytes live just after an allocation: its phase, what was allocated, the sum."""

    phase: str
    what: str
    parts: tuple  # the live tensors' bytes, sympy expressions over the config's symbols
    size: Any = 0  # what this allocation added

    @property
    def expr(self):
        """The bytes live: the parts' sum."""
        return sympy.Add(*self.parts)


class Ledger:
    """Named tensors allocated and freed in program order (names are unique while live); every
    allocation records a :class:`Moment`. ``given``: what the step starts with."""

    def __init__(self, **given):
        self.live: dict[str, Any] = {name: sympy.sympify(v) for name, v in given.items()}
        self.moments: list[Moment] = []
        self.phase = "forward"

    def alloc(self, what: str, **tensors) -> None:
        for name in tensors:
            if name in self.live:
                raise ValueError(f"{name} is already live")
        added = {name: sympy.sympify(v) for name, v in tensors.items()}
        self.live.update(added)  # each sympified once: a deep model's ledger is long
        self.moments.append(
            Moment(self.phase, what, tuple(self.live.values()), sympy.Add(*added.values()))
        )

    def free(self, *names: str) -> None:
        for name in names:
            del self.live[name]

    def total(self):
        return sympy.Add(*self.live.values())


@dataclass(frozen=True)
class Peak:
    """The largest moment at some sizes: bytes, phase, what was allocated, its expression,
    and every moment's bytes in order (the step's timeline)."""

    bytes: int
    phase: str
    what: str
    expr: Any
    timeline: tuple[tuple[str, str, int], ...] = ()

    def phase_peaks(self) -> dict[str, int]:
        """The highest moment of each phase that has one."""
        out: dict[str, int] = {}
        for phase, _, b in self.timeline:
            out[phase] = max(out.get(phase, 0), b)
        return out


def peak(moments: Iterable[Moment], values: Mapping) -> Peak:
    """The first largest moment at ``values``."""
    from complexo.cost import evaluate

    moments = list(moments)
    if not moments:
        raise ValueError("a ledger with no allocation has no peak")
    known: dict = {}  # each tensor's bytes evaluated once: a deep model's ledger repeats them

    def bytes_of(part) -> int:
        if part not in known:
            known[part] = evaluate(part, values)
        return known[part]

    timeline = tuple((mo.phase, mo.what, sum(map(bytes_of, mo.parts))) for mo in moments)
    i = max(range(len(timeline)), key=lambda k: (timeline[k][2], -k))
    best = moments[i]
    return Peak(timeline[i][2], best.phase, best.what, best.expr, timeline)


def peak_expr(moments: Iterable[Moment]):
    """The high-water mark over every size: Max of the moments (unevaluated, as written)."""
    return sympy.Max(*(mo.expr for mo in moments), evaluate=False)


QUANTITY = "training_peak_bytes"


def peak_quantity(book: Ledger, values: Mapping, measure: Callable[[], Tracked], summed: int):
    """The step's peak as a quantity of an analysis's result (its formula: the moment's
    expression; its torch reading: MemTracker's peak, when counting runs), and a note that
    names the phase, what is live, and how far the all-live sum ``summed`` is from it."""
    from complexo.cost import Kind
    from complexo.counting import counted
    from complexo.result import Gap, Quantity
    from complexo.units import human

    best = peak(book.moments, values)
    record = counted(measure, None)
    tracked = None if record is None else record.bytes
    gaps = (
        ()
        if tracked in (None, best.bytes)
        else (Gap("torch", "", "unexplained", (), best.bytes - tracked),)
    )
    quantity = Quantity(
        QUANTITY,
        "training step's peak (lifetimes)",
        Kind.MEMORY,
        best.expr,
        best.bytes,
        {"fvcore": None, "torch": tracked},
        gaps,
    )
    phases = best.phase_peaks()
    others = ", ".join(f"{ph} {human(b, 'byte')}" for ph, b in phases.items() if ph != best.phase)
    note = (
        f"training step's peak: {human(best.bytes, 'byte')} in the {best.phase} ({best.what}; "
        f"{others or 'no other phase allocates'}), weights and inputs included, the output held "
        f"through the backward; adding every saved activation, gradient and weight as if all "
        f"were live at once says {human(summed, 'byte')} ({summed / best.bytes - 1:+.0%})"
        + (
            ""
            if tracked is None
            else f"; MemTracker under FakeTensorMode: {human(tracked, 'byte')}"
            + (
                f" (per phase, read off its {' and '.join(map(str, record.depth))}-layer copies)"
                if record.depth
                else ""
            )
        )
    )
    return quantity, note


@dataclass
class Tracked:
    """MemTracker's record of one step: the peak total, the phase it was reached in, the peak
    by kind (parameters, gradients, activations, temporaries, optimizer state), and the live
    total after each op that changed it, with its phase (the step's timeline)."""

    bytes: int
    phase: str
    by_kind: dict[str, int]
    timeline: list[tuple[str, str, int]] = field(default_factory=list)
    depth: tuple[int, ...] = ()  # the copies' depths, when read off shallower copies (deeper)
    peaks: dict[str, int] = field(default_factory=dict)  # per phase, where there is no timeline

    def phase_peaks(self) -> dict[str, int]:
        if self.peaks:
            return dict(self.peaks)
        out: dict[str, int] = {}
        for phase, _, b in self.timeline:
            out[phase] = max(out.get(phase, 0), b)
        return out


OPTIMIZERS = ("adam", "adamw", "sgd", "none")


class _NoHook:
    """A hook handle with nothing to remove: MemTracker's placeholder for a frozen parameter."""

    def remove(self) -> None:
        pass


_NO_HOOK = _NoHook()


def _optimizer(name: str, params, lr: float):
    """The optimizer a step is measured with: torch's defaults but the learning rate (AdamW
    decays its weights by 1e-2, in place); ``none``: no step."""
    import torch

    make = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    return make[name](params, lr=lr) if params and name in make else None


def _masters(trained, optimizer: str, lr: float):
    """Mixed precision (:func:`complexo.profile.trace._training_step`): fp32 master copies of
    the trained weights, the optimizer over them, and the step's two ends: the gradients cast
    up onto the masters (each 16-bit gradient let go as its copy is made), the stepped masters
    copied back down into the weights."""
    import torch

    masters = [p.detach().float().requires_grad_() for p in trained]
    opt = _optimizer(optimizer, masters, lr)

    def cast_up():
        for master, p in zip(masters, trained, strict=True):
            master.grad, p.grad = p.grad.float(), None

    @torch.no_grad()
    def copy_down():
        for master, p in zip(masters, trained, strict=True):
            p.copy_(master)

    return masters, opt, cast_up, copy_down


def tracked_build(build: Callable[..., tuple], *args, optimizer: str = "sgd") -> Tracked:
    """:func:`tracked_step` of the module and single input an analysis's
    ``build(*args, device=None)`` makes in the current (fake) mode."""

    def make():
        module, x = build(*args, device=None)
        return module, (x,)

    return tracked_step(make, optimizer)


def tracked_step(
    build: Callable[[], tuple],
    optimizer: str = "sgd",
    *,
    master_fp32: bool = False,
    output: Callable | None = None,
) -> Tracked:
    """One training step measured by ``torch.distributed._tools.mem_tracker.MemTracker`` under
    ``FakeTensorMode`` (no storage is allocated: any size runs in milliseconds of bookkeeping).
    ``build()`` is called inside the fake mode and returns ``(module, inputs)``; the step is
    the profiler's: ``out = module(*inputs)`` (``output(out)`` where given: a tensor from
    whatever the module returns), ``out.sum().backward()``, the optimizer's step (``sgd``: no
    state; ``adam``/``adamw``: two fp32 moments; ``none``: no step), ``out`` held throughout.
    With ``master_fp32`` the optimizer steps fp32 master copies of the trained weights, their
    gradients cast up before it and the weights copied down after (mixed precision).

    A step in a steady state: an optimizer with state (or masters) is stepped once before, out
    of the record, on zero gradients of the trained weights' shapes (no forward or backward:
    the state depends on the shapes alone, and under fake tensors no value is read), so its
    moments (and each parameter's step count, a 0-dim fp32 tensor on the
    CPU) are given, as the masters are, and ``zero_grad(set_to_none=True)`` lets the earlier
    gradients go before the record starts. The phase of each op is MemTracker's own: the
    optimizer's step hooks, its module tracker's backward flag, else the forward."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import _TOTAL_KEY, MemTracker

    device_of = torch.ops.prim.device.default

    class Timeline(MemTracker):
        def __init__(self):
            super().__init__()
            self.log: list[tuple[str, str, int]] = []
            self.best = (0, "forward")

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is device_of:  # C++ asking a fake tensor its device: 313 of the 450
                # dispatches of an MHSA step, none of which makes or frees a tensor; straight
                # to FakeTensorMode, past MemTracker's bookkeeping (a warm step 27 -> 22 ms)
                return func(*args, **(kwargs or {}))
            before = self._total()
            res = super().__torch_dispatch__(func, types, args, kwargs)
            after = self._total()
            if self._in_opt or self.stepping:
                phase = "optimizer"
            elif self._mod_tracker.is_bw or (self.log and self.log[-1][0] != "forward"):
                phase = "backward"  # and what follows it until the optimizer's step
            else:
                phase = "forward"
            if self.log and before != self.log[-1][2]:
                self.log.append((phase, "(freed)", before))
            if after != before:
                self.log.append((phase, str(func), after))
            if after > self.best[0]:
                self.best = (after, phase)
            return res

        stepping = False  # the casts around a mixed-precision step: the optimizer's phase

        def _track_module_params_and_buffers(self, module, install_grad_hooks=True):
            # a frozen parameter (LoRA's base) takes no gradient hook: torch refuses one on a
            # tensor that needs no gradient, and MemTracker would install it on every module
            for param in module.parameters():
                if not param.requires_grad:
                    self._param_to_grad_hook_handles.setdefault(param, (_NO_HOOK, _NO_HOOK))
            return super()._track_module_params_and_buffers(module, install_grad_hooks)

        def _total(self) -> int:
            return sum(snap[_TOTAL_KEY] for snap in self._curr_mem_snap.values())

        def _update_peak_stats(self, peak_state) -> None:
            # the step's peak only: MemTracker's per-module peaks walk every module at every
            # op (minutes for a deep model), and nothing here reads them
            for dev, snap in self._curr_mem_snap.items():
                if self._peak_mem.get(dev, 0) < snap[_TOTAL_KEY]:
                    self._peak_mem[dev] = snap[_TOTAL_KEY]
                    self._peak_mem_snap[dev] = dict(snap)

    def result(out):
        return out if output is None else output(out)

    with FakeTensorMode(allow_non_fake_inputs=True):
        module, inputs = build()
        trained = [p for p in module.parameters() if p.requires_grad]
        before = after = None
        if master_fp32 and trained and optimizer != "none":
            masters, opt, before, after = _masters(trained, optimizer, 1e-3)
        else:
            masters, opt = [], _optimizer(optimizer, trained, 1e-3)  # InfoNCE: no weights
        if opt is not None and (masters or opt.defaults.get("betas")):  # state to make
            for p in trained:  # a gradient of each weight's shape: the step makes the state
                p.grad = torch.zeros_like(p)
            if before:
                before()
            opt.step()
            opt.zero_grad(set_to_none=True)
            for t in (*trained, *inputs):
                if isinstance(t, torch.Tensor):
                    t.grad = None
        tracker = Timeline()
        given = [t for t in inputs if isinstance(t, torch.Tensor)]
        tracker.track_external(module, *([opt] if opt else []), *masters, *given)
        start = tracker._total()
        with tracker:
            out = result(module(*inputs))
            out.sum().backward()
            if opt:
                tracker.stepping = before is not None
                if before:
                    before()
                opt.step()
                if after:
                    after()
        del out
    by_kind: dict[str, int] = {}
    for per_device in tracker.get_tracker_snapshot("peak").values():
        for kind, nbytes in per_device.items():
            key = str(getattr(kind, "value", kind))
            by_kind[key] = by_kind.get(key, 0) + int(nbytes)
    timeline = [("forward", "given", start), *tracker.log]
    best, phase = max(tracker.best, (start, "forward"))
    return Tracked(best, phase, by_kind, timeline)


def cpu_step_peak(
    module, inputs, optimizer: str = "sgd", *, curve: int = 0, master_fp32: bool = False
):
    """The same step run for real on the CPU, its peak from the profiler's record of every
    allocation and free (:func:`cpu_live_peak`): the storages it is given (weights, inputs,
    as :func:`tracked_step` has them: the optimizer's state and the fp32 masters of a step
    taken before, no gradient) and the most it holds beyond them. With ``curve``: the live
    bytes after each allocation of at least that many bytes instead
    (:func:`cpu_live_curve`)."""
    import torch

    from complexo.measure import storage_bytes

    trained = [p for p in module.parameters() if p.requires_grad]
    before = after = None
    if master_fp32 and trained and optimizer != "none":
        masters, opt, before, after = _masters(trained, optimizer, 1e-6)
    else:
        masters, opt = [], _optimizer(optimizer, trained, 1e-6)

    def step():
        out = module(*inputs)
        out.sum().backward()
        if opt:
            if before:
                before()
            opt.step()
            if after:
                after()

    tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
    if opt is not None and (masters or opt.defaults.get("betas")):  # a steady state
        step()
        opt.zero_grad(set_to_none=True)
        for t in (*trained, *tensors):
            t.grad = None
    state = [v for s in opt.state.values() for v in s.values()] if opt else []
    given = [*module.parameters(), *tensors, *masters, *state]
    if curve:
        return [storage_bytes(given) + b for b in cpu_live_curve(step, curve)]
    return storage_bytes(given) + cpu_live_peak(step)


def cpu_live_peak(fn: Callable[[], object]) -> int:
    """The most bytes ``fn`` holds allocated at once on the CPU beyond what was live before it:
    the profiler's raw allocation records (one per allocation, a negative one per free, each
    with its time) summed in time order. Unlike the per-op sums of
    :func:`complexo.measure.cpu_peak_bytes`, a free inside an autograd node (a saved tensor let
    go) counts when it happens, not at the node's start. An op's scratch space is seen too."""

    return max(cpu_live_curve(fn), default=0)


def cpu_live_curve(fn: Callable[[], object], min_bytes: int = 1) -> list[int]:
    """The bytes ``fn`` holds beyond what was live before it, after each allocation of at least
    ``min_bytes`` (every free and smaller allocation counted in between), in time order: the
    profiler's raw allocation records."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from complexo.measure import quiet_profiler

    with quiet_profiler(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    cpu = (DeviceType.CPU, DeviceType.MKLDNN, DeviceType.IDEEP)
    records = [
        (evt.start_ns(), evt.nbytes())
        for evt in prof.profiler.kineto_results.events()
        if evt.name() == "[memory]" and evt.device_type() in cpu
    ]
    live, curve = 0, []
    for _, nbytes in sorted(records, key=lambda r: r[0]):
        live += nbytes
        if nbytes >= min_bytes:
            curve.append(live)
    return curve


def in_dtype(module, dtype, device: str | None):
    """``module.to(dtype)``; for ``device`` None, a module made in the current mode (a
    FakeTensorMode: MemTracker's step), cast parameter by parameter, since ``to`` cannot swap
    fake parameters (:func:`cast_parameters`)."""
    if device is not None:
        return module.to(dtype)
    cast_parameters(module, dtype)
    return module


def cast_parameters(module, dtype) -> None:
    """``module.to(dtype)`` for a module made under FakeTensorMode (whose parameters cannot be
    swapped in place, as ``to`` does for tensor subclasses): each parameter and floating
    buffer replaced by its cast copy, a parameter shared by two modules by one copy."""
    import torch

    cast: dict[int, torch.nn.Parameter] = {}  # a tied weight (GPT-2's head) stays one
    for mod in module.modules():
        for name, param in list(mod._parameters.items()):
            if param is not None:
                if id(param) not in cast:
                    cast[id(param)] = torch.nn.Parameter(param.detach().to(dtype))
                mod._parameters[name] = cast[id(param)]
        for name, buffer in list(mod._buffers.items()):  # floating buffers too, as ``to`` does
            if buffer is not None and buffer.is_floating_point():
                mod._buffers[name] = buffer.to(dtype)
