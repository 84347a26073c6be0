"""The MHSA block run for real: the rows a profiler can tell apart (the four projections with
their bias adds, the two attention products and each element-wise pass over the n×n scores; or
the fused kernel), the memory it should peak at, and the step (a forward without autograd, or
forward, backward and SGD in profiler ranges). :func:`complexo.profile.run` does the rest.

Bias adds belong to the projections' row: ``nn.Linear`` runs ``addmm``, which adds the bias in
the matrix product's epilogue, so no profiler can time them apart.
"""

from __future__ import annotations

from sympy import Integer

from complexo.conventions import BOOL_BYTES
from complexo.cost import Kind, evaluate
from complexo.profile.step import sgd_rows
from complexo.registry import Profiling, Row, Setup
from complexo.symbols import B, G, d, e, h, n

F = Kind.FORWARD
PROJECTIONS = ("aten::addmm", "aten::mm")


def rows(cfg, mode: str, side: str = "") -> list[Row]:
    """The forward's rows (inside the forward's range in training), then in training the
    backward and the optimizer, which complete the step, and the forward phase as a whole
    beside them. Bytes: each input read once and each output written once."""
    from complexo.analyses.mhsa_cost import SDPA_KERNELS, _traffic

    hs = d / h
    kv = G * hs if cfg.kv_heads is not None else d
    x, S = B * n * d * e, B * h * n**2 * e  # one (B, n, d) tensor; the score matrix
    within = "complexo::forward" if mode == "train" else ""

    def row(name, names, moved, ops):
        return Row(name, tuple((F, t) for t in names), moved, ops, within)

    # q and out: x and W in, (B, n, d) out; k and v: x and W in, (B, n, G·hs) out; biases
    proj_bytes = 2 * (2 * x + d * d * e) + 2 * (x + d * kv * e + B * n * kv * e)
    projections = ["q_proj", "k_proj", "v_proj", "out_proj"]
    if cfg.bias:
        projections.append("bias_add")
        proj_bytes += (2 * d + 2 * kv) * e
    out = [row("projections", projections, proj_bytes, PROJECTIONS)]
    if cfg.fused:
        names = ["scores", "scale", *(["causal_mask"] if cfg.causal else []), "softmax", "attn_v"]
        out.append(row("attention kernel", names, _traffic(True), SDPA_KERNELS))
    else:
        out.append(row("QKᵀ and A·V", ["scores", "attn_v"], 4 * x + 2 * S, ("aten::bmm",)))
        out.append(row("scale", ["scale"], 2 * S, ("aten::mul",)))
        if cfg.alibi:
            out.append(
                row("alibi", ["alibi_bias", "alibi_add"], 2 * S + h * n**2 * e, ("aten::add",))
            )
        if cfg.causal:
            mask = 2 * S + BOOL_BYTES * n**2
            out.append(row("mask", ["causal_mask"], mask, ("aten::masked_fill",)))
        out.append(row("softmax", ["softmax"], 2 * S, ("aten::_softmax",)))
    if mode == "train":
        out += sgd_rows(cfg.model(), sum((r.bytes for r in out), Integer(0)))
    return out


def memory(cfg, mode: str, side: str, model) -> tuple[int, int, str]:
    """Inference: what the block is given and its high-water mark above that
    (:func:`~complexo.analyses.mhsa.forward_peak`); training: x, its output, saved activations,
    weights and their gradients (SGD keeps no state)."""
    from complexo.analyses.mhsa import forward_peak
    from complexo.render import human

    values = cfg.values
    weights = evaluate(model.total(Kind.PARAMS), values) * values[e]
    x_bytes = cfg.batch * cfg.seq * cfg.dim * values[e]
    if mode == "train":
        predicted = 2 * weights + 2 * x_bytes + evaluate(model.total(Kind.ACTIVATION), values)
    else:
        predicted = weights + x_bytes + forward_peak(cfg)
    # n×n matrices: two coexist in the forward (each element-wise pass is out of place); the
    # probabilities are saved for the backward
    matrix = evaluate(model.total(Kind.MEMORY, tag="matrix"), values)
    scores = 2 * matrix if mode == "forward" else matrix
    hint = "a smaller --seq or --batch" + (
        f", or --impl sdpa: its n×n score matrices are {human(scores, 'byte')} of it"
        if not cfg.fused and scores > predicted / 2
        else ""
    )
    return predicted, predicted, hint


def setup(cfg, mode: str, side: str, device: str) -> Setup:
    import torch

    from complexo.analyses.mhsa import build
    from complexo.profile.trace import _phased_step

    block, x = build(cfg, device=device)
    x = x.detach().requires_grad_(mode == "train")
    if mode == "train":
        step = _phased_step(lambda: block(x), torch.optim.SGD(block.parameters(), lr=1e-6))
        notes = [
            "training: the terms' times are their ops' inside the forward's range; the phases "
            "(forward, backward, optimizer) are the whole step, timed by range"
        ]
        return Setup(step, [*block.parameters(), x], notes=notes)

    def forward():
        with torch.no_grad():
            block(x)

    return Setup(forward, [*block.parameters(), x])


PROFILING = Profiling(
    ("forward", "train"),
    model=lambda cfg, side="": cfg.model(),
    rows=rows,
    memory=memory,
    setup=setup,
    cuda_graph=True,
)


def profile_mhsa(cfg, **runs):
    """The block at ``cfg`` run for real (:func:`complexo.profile.step.profile_side`)."""
    from complexo.analyses.mhsa import ANALYSIS
    from complexo.profile.step import profile_side

    return profile_side(ANALYSIS, cfg, **runs)
