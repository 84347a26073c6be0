"""The patch embedding run for real, each side its own profile: a profiler range around the
convolution, or around the patchify (its copy) and the linear layer, each beside its FLOPs (the
bias add with its product: the kernel adds it in its epilogue) and the bytes it must move; in
training, the SGD step's phases too. :func:`complexo.profile.run` does the rest."""

from __future__ import annotations

from sympy import Integer

from complexo.cost import Kind, evaluate
from complexo.registry import Profiling, Row, Setup, sgd_rows
from complexo.symbols import B, d, e

F = Kind.FORWARD
# the rows of each side: (row, the module path it times, its forward terms, its moved term)
ROWS = {
    "conv": (("convolution", "proj", ("embed", "embed_bias"), "moved_embed"),),
    "linear": (
        ("patchify (copy)", "patchify", (), "moved_patchify"),
        ("linear", "proj", ("embed", "embed_bias"), "moved_embed"),
    ),
}


def cost_model(cfg, side: str):
    return cfg.model(side)


def rows(cfg, mode: str, side: str) -> list[Row]:
    """One row per timed module: the forward terms it carries and the bytes its call moves (the
    patchify carries no FLOPs: its copy's bytes only)."""
    model = cost_model(cfg, side)
    out = []
    for name, module, terms, moved in ROWS[side]:
        if moved == "moved_patchify" and not cfg.copies:
            continue  # patch order is memory order: a view, nothing to time
        carried = tuple((F, t) for t in terms)
        out.append(
            Row(name, carried, model.term(Kind.MEMORY, moved).expr, (f"complexo::{module}",))
        )
    if mode == "train":
        out += sgd_rows(model, sum((r.bytes for r in out), Integer(0)))
    return out


def memory(cfg, mode: str, side: str, model) -> tuple[int, int, str]:
    """Inference: the weights, the pixels, the linear side's copy and the tokens; training adds
    the weights' gradients and the tokens' gradient (SGD keeps no state; what is saved is the
    pixels or their copy, already held)."""
    from complexo.analyses.patch_cost import sizes

    pixels, tokens, _ = sizes(cfg.video)
    weights = model.total(Kind.PARAMS) * e
    held = weights + B * pixels * e + model.total(Kind.MEMORY, tag="copy") + B * tokens * d * e
    if mode == "train":
        held += weights + B * tokens * d * e
    predicted = evaluate(held, cfg.values)
    return predicted, predicted, "a smaller --res, --batch, --frames or --dim"


def setup(cfg, mode: str, side: str, device: str) -> Setup:
    import torch

    from complexo.analyses.patch import build
    from complexo.profile.trace import _module_ranges, _phased_step

    block, x = build(cfg, side, device=device)
    if mode == "train":
        step = _phased_step(lambda: block(x), torch.optim.SGD(block.parameters(), lr=1e-6))
    else:

        def step():
            with torch.no_grad():
                block(x)

    timed = {module for _, module, _, _ in ROWS[side]}

    def group(path, _module):
        return path if path in timed else None

    return Setup(step, [*block.parameters(), x], ranges=lambda: _module_ranges(block, group))


PROFILING = Profiling(
    ("forward", "train"),
    model=cost_model,
    rows=rows,
    memory=memory,
    setup=setup,
    sweep=False,
)
