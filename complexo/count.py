"""Numeric counting of any nn.Module at fixed sizes, on the meta device (nothing allocated):
fvcore's forward and FlopCounterMode's forward and backward side by side, per op, with every
disagreement named op by op, and the peak training memory from torch's MemTracker.

Conventions: FLOP = 2·MAC (fvcore's MACs doubled in measure.count_fvcore); the backward starts
from the output's sum and the input requires grad, as in complexo derive; bytes are the unique
storages autograd saves, parameters excluded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from complexo.derive import default_dtype
from complexo.errors import ComplexoError
from complexo.userblock import DTYPES, _one_line, _where, parse_ctor

# The same work under the two counters' names: fvcore names the op a module called (linear,
# matmul), FlopCounterMode the aten kernel that ran (addmm, bmm).
FAMILIES = {
    "linear layers": (
        {"aten::linear", "aten::addmm", "aten::mm"},
        {"aten.mm", "aten.addmm"},
    ),
    "batched products": (
        {"aten::matmul", "aten::bmm", "aten::einsum", "aten::baddbmm"},
        {"aten.bmm", "aten.baddbmm"},
    ),
    "convolutions": ({"aten::conv", "aten::_convolution"}, {"aten.convolution"}),
    "attention (SDPA)": (
        {"aten::scaled_dot_product_attention"},
        {
            "aten._scaled_dot_product_flash_attention_for_cpu",
            "aten._scaled_dot_product_efficient_attention",
            "aten._scaled_dot_product_flash_attention",
        },
    ),
}
WHY = {
    "batched products": "aten::scaled_dot_product_attention",  # torch's bmm inside SDPA's math
}


def parse_shapes(text: str) -> list[list[int]]:
    """'1,3,224,224;1,10' -> one shape of positive integers per input."""
    shapes = []
    for part in text.split(";"):
        try:
            shape = [int(x) for x in part.split(",")]
        except ValueError:
            raise ComplexoError(
                f"--input: '{part.strip()}' is not a shape like 1,3,224,224"
            ) from None
        if any(x < 1 for x in shape):
            raise ComplexoError(f"--input: sizes must be at least 1, got {part.strip()}")
        shapes.append(shape)
    return shapes


@dataclass
class Counting:
    fvcore: object | None  # result.Count of the forward, or None when fvcore could not trace
    fvcore_error: str
    torch_forward: object
    torch_backward: object
    params: int
    saved_bytes: int
    saved: tuple
    disagreements: list[str]
    memory: dict | None
    memory_note: str = ""
    notes: list[str] = field(default_factory=list)


def count(cls, ctor: str, inputs: str, dtype: str = "float32", optimizer: str = "adam"):
    (args, kwargs, _), shapes = parse_ctor(ctor, symbolic=False), parse_shapes(inputs)
    if dtype not in DTYPES:
        raise ComplexoError(f"--dtype {dtype}: choose from {', '.join(DTYPES)}")
    import torch

    from complexo.measure import count_fvcore, cpu_attention_formulas, measure_torch

    tdtype = getattr(torch, dtype)

    def build():
        with torch.device("meta"):
            try:
                with default_dtype(tdtype):
                    block = cls(*args, **kwargs)
            except Exception as err:
                raise ComplexoError(
                    f"{cls.__name__}({ctor}) failed: {_one_line(err)}{_where(err)}"
                ) from None
            xs = [torch.empty(s, dtype=tdtype, requires_grad=True) for s in shapes]
        return block, xs

    block, xs = build()
    try:
        measured = measure_torch(
            lambda: _sum_of_outputs(block(*xs), torch),
            list(block.parameters()),
            custom_mapping=cpu_attention_formulas(),
        )
    except ComplexoError:
        raise
    except Exception as err:
        raise ComplexoError(
            f"{cls.__name__} failed on meta: {_one_line(err)}{_where(err)}"
        ) from None
    fv, fv_error = None, ""
    block, xs = build()
    try:
        fv = count_fvcore(block, tuple(xs))
    except Exception as err:
        fv_error = f"fvcore could not trace it: {_one_line(err)}"
    memory, note = peak_memory(cls, args, kwargs, shapes, tdtype, optimizer)
    return Counting(
        fvcore=fv,
        fvcore_error=fv_error,
        torch_forward=measured.forward,
        torch_backward=measured.backward,
        params=sum(p.numel() for p in block.parameters()),
        saved_bytes=measured.saved_bytes,
        saved=measured.saved,
        disagreements=disagreements(fv, measured.forward) if fv else [],
        memory=memory,
        memory_note=note,
    )


def _sum_of_outputs(y, torch):
    """The forward's output, or the sum of its tensors (the backward starts from their sums)."""
    if isinstance(y, torch.Tensor):
        return y
    from complexo.derive import _tensors

    outs = [t for t in _tensors(y, torch) if t.requires_grad]
    if not outs:
        raise ComplexoError("the forward returned no tensor that needs a gradient")
    return sum(t.sum() for t in outs)


def disagreements(fv, tf) -> list[str]:
    """Every op where fvcore's forward and FlopCounterMode's forward differ, and why."""
    out = []
    fv_left, tf_left = dict(fv.by_op), dict(tf.by_op)
    for family, (fv_ops, tf_ops) in FAMILIES.items():
        a = {k: fv_left.pop(k) for k in list(fv_left) if k in fv_ops}
        b = {k: tf_left.pop(k) for k in list(tf_left) if k in tf_ops}
        if sum(a.values()) != sum(b.values()):
            why = ""
            if WHY.get(family) in fv.uncounted_ops:
                why = f" ({WHY[family]} ran and fvcore has no formula for it: torch counts it)"
            out.append(
                f"{family}: fvcore {_ops(a)} vs torch {_ops(b)}: differ by "
                f"{sum(a.values()) - sum(b.values()):+,}{why}"
            )
    for op, v in fv_left.items():
        out.append(
            f"{op}: fvcore counts {v:,} (its convention for this op); "
            "FlopCounterMode has no formula for it"
        )
    for op, v in tf_left.items():
        out.append(f"{op}: torch counts {v:,}; fvcore has no formula for it")
    return out


def _ops(ops: dict) -> str:
    return " + ".join(f"{k} {v:,}" for k, v in ops.items()) if ops else "nothing"


def peak_memory(cls, args, kwargs, shapes, tdtype, optimizer: str) -> tuple[dict | None, str]:
    """One training step (forward, backward from the output's sum, the optimizer's step) of the
    block built under FakeTensorMode, measured by MemTracker
    (:func:`complexo.peak.tracked_step`): peak bytes by kind (parameters, gradients,
    activations, temporaries, optimizer state). A steady step: Adam's moments from a step taken
    before are given."""
    import torch

    try:
        from complexo.peak import tracked_step

        def build():
            with default_dtype(tdtype):
                block = cls(*args, **kwargs)
            return block, [torch.empty(s, dtype=tdtype, requires_grad=True) for s in shapes]

        tracked = tracked_step(build, optimizer, output=lambda y: _sum_of_outputs(y, torch))
    except ComplexoError:
        raise
    except Exception as err:  # a torch built without distributed, or a block MemTracker refuses
        return None, f"MemTracker failed: {_one_line(err)}"
    note = f"MemTracker under FakeTensorMode, one steady step with optimizer {optimizer}"
    return tracked.by_kind, note + f" (peak in the {tracked.phase})"


def to_json(c: Counting) -> dict:
    def count_doc(x):
        return (
            None
            if x is None
            else {
                "total": int(x.total),
                "by_op": {k: int(v) for k, v in x.by_op.items()},
                "uncounted_ops": sorted(x.uncounted_ops),
            }
        )

    return {
        "convention": "FLOP = 2·MAC; backward from the output's sum; input requires grad",
        "fvcore_forward": count_doc(c.fvcore),
        "fvcore_error": c.fvcore_error or None,
        "torch_forward": count_doc(c.torch_forward),
        "torch_backward": count_doc(c.torch_backward),
        "params": c.params,
        "saved_bytes": c.saved_bytes,
        "saved": [{"shape": list(s), "dtype": dt, "bytes": b} for s, dt, b in c.saved],
        "disagreements": c.disagreements,
        "peak_memory": c.memory,
        "peak_memory_note": c.memory_note,
    }


def lines(c: Counting) -> list[str]:
    out = ["convention: FLOP = 2·MAC; backward from the output's sum; input requires grad"]
    fv = c.fvcore.by_op if c.fvcore else {}
    ops = list(dict.fromkeys([*fv, *c.torch_forward.by_op, *c.torch_backward.by_op]))
    out.append(f"{'op':52} {'fvcore fwd':>16} {'torch fwd':>16} {'torch bwd':>16}")
    for op in ops:
        cells = [fv.get(op), c.torch_forward.by_op.get(op), c.torch_backward.by_op.get(op)]
        out.append(f"{op:52} " + " ".join(f"{x:>16,}" if x else f"{'-':>16}" for x in cells))
    totals = [c.fvcore.total if c.fvcore else None, c.torch_forward.total, c.torch_backward.total]
    out.append(
        f"{'total':52} " + " ".join(f"{x:>16,}" if x is not None else f"{'-':>16}" for x in totals)
    )
    if c.fvcore_error:
        out.append(c.fvcore_error)
    out.append(
        f"params {c.params:,}; saved for backward {c.saved_bytes:,} bytes in {len(c.saved)} tensors"
    )
    if c.disagreements:
        out.append("fvcore and torch disagree (forward):")
        out += [f"  {d}" for d in c.disagreements]
    elif c.fvcore:
        out.append(
            "fvcore and torch agree (forward), family by family: fvcore's linear/matmul are "
            "torch's mm/addmm/bmm, its conv torch's convolution"
        )
    if c.fvcore and c.fvcore.uncounted_ops:
        out.append(
            f"counted by neither (no fvcore formula): {', '.join(sorted(c.fvcore.uncounted_ops))}"
        )
    if c.memory:
        parts = ", ".join(f"{k} {v:,}" for k, v in c.memory.items() if k != "Total" and v)
        out.append(
            f"peak training memory {c.memory.get('Total', 0):,} bytes ({parts}); {c.memory_note}"
        )
    else:
        out.append(f"peak training memory: {c.memory_note}")
    return out
