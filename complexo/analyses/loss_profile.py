"""A loss run for real: the matmul (the LM head's x·Wᵀ, or CLIP's a·bᵀ) and the log-sum-exp
passes as separate rows, each beside its FLOPs and the fewest bytes it must move; in training the
backward and (with a head) the SGD step too. The passes are memory-bound: 5 FLOPs per logit
against 4 bytes of fp32 logit read, about 1 FLOP per byte, far below any device's ridge.
:func:`complexo.profile.run` does the rest.

The rows describe the written-out reference (:class:`complexo.blocks.loss.LMHeadLoss`,
:class:`~complexo.blocks.loss.InfoNCE`), not the chunked loss.
"""

from __future__ import annotations

from sympy import Integer

from complexo.analyses.loss_cost import cost_model
from complexo.conventions import FP32_BYTES
from complexo.cost import Kind, evaluate
from complexo.registry import Profiling, Row, Setup
from complexo.symbols import B, V, d, e, n

F = Kind.FORWARD
MATMUL = ("aten::mm", "aten::matmul", "aten::linear")
PASSES = ("aten::amax", "aten::sub", "aten::exp", "aten::sum", "aten::log", "aten::gather")
PASSES += ("aten::neg", "aten::mean", "aten::mul", "aten::pow", "aten::rsub", "aten::add")


def model(cfg, side: str = ""):
    return cost_model(cfg.kind, cfg.dtype == "fp32")


def _sizes(cfg):
    """(rows, logits per row, the matmul's inputs in bytes), as expressions."""
    if cfg.kind == "infonce":
        return B, B, 2 * B * d * e
    return B * n, V, B * n * d * e + V * d * e


def rows(cfg, mode: str, side: str = "") -> list[Row]:
    """The matmul and the passes (inside the forward's range in training), then the backward
    and the optimizer, and the forward phase as a whole beside them."""
    m = model(cfg)
    rows_, width, inputs = _sizes(cfg)
    logits = rows_ * width * e
    within = "complexo::forward" if mode == "train" else ""
    matmul = tuple((F, t.name) for t in m.terms(F) if t.matmul)
    passes = tuple((F, t.name) for t in m.terms(F) if not t.matmul)
    upcast = 0 if cfg.dtype == "fp32" else rows_ * width * FP32_BYTES
    out = [
        Row("matmul", matmul, inputs + logits, MATMUL, within),
        # fewest: the logits read once (and their fp32 copy written and read)
        Row("log-sum-exp passes", passes, logits + 2 * upcast, PASSES, within),
    ]
    if mode == "train":
        forward = tuple((F, t.name) for t in m.terms(F))
        weights = m.total(Kind.PARAMS) * e
        backward = tuple((Kind.BACKWARD, t.name) for t in m.terms(Kind.BACKWARD))
        saved = m.total(Kind.ACTIVATION)
        moved = sum((r.bytes for r in out), Integer(0))
        out.append(Row("forward (step)", forward, moved, ("complexo::forward",), step=False))
        out.append(Row("backward (step)", backward, saved + 2 * weights, ("complexo::backward",)))
        if cfg.kind != "infonce":
            out.append(Row("optimizer (step)", (), 3 * weights, ("complexo::optimizer",)))
    return out


def memory(cfg, mode: str, side: str, m) -> tuple[int, int, str]:
    """The weights and inputs, the logits (and their fp32 copy), two fp32 passes over them alive
    at once; training: the step's high-water mark with lifetimes
    (:mod:`complexo.analyses.loss_peak`)."""
    rows_, width, inputs = _sizes(cfg)
    held = inputs + m.total(Kind.MEMORY, tag="logits") + 2 * rows_ * width * FP32_BYTES
    predicted = evaluate(held, cfg.values)
    if mode == "train":
        from complexo.analyses.loss_peak import ledger
        from complexo.peak import peak

        predicted = peak(ledger(cfg).moments, cfg.values).bytes
    hint = "--chunks is formula-only here; a smaller --batch, --seq or --vocab"
    return predicted, predicted, hint


def setup(cfg, mode: str, side: str, device: str) -> Setup:
    import torch

    from complexo.analyses.loss import build
    from complexo.profile.trace import _phased_step

    module, inputs = build(cfg, "reference", device=device)
    train = mode == "train"
    inputs = tuple(t.detach().requires_grad_(train) if t.is_floating_point() else t for t in inputs)
    given = [*module.parameters(), *inputs]
    if train and cfg.kind != "infonce":
        opt = torch.optim.SGD(module.parameters(), lr=1e-6)
        return Setup(_phased_step(lambda: module(*inputs), opt), given)
    record = torch.profiler.record_function

    def step():
        if not train:
            with torch.no_grad():
                module(*inputs)
            return
        with record("complexo::forward"):
            out = module(*inputs)
        with record("complexo::backward"):
            out.backward()

    return Setup(step, given)


PROFILING = Profiling(
    ("train", "forward"),
    model=model,
    rows=rows,
    memory=memory,
    setup=setup,
    iteration="training step",
)
