"""Activation checkpointing of the MLP block (``complexo mlp --checkpoint full``): the block is
one layer, so ``full`` runs it under ``torch.utils.checkpoint.checkpoint(block, x,
use_reentrant=False)`` (:mod:`complexo.checkpointing`). The forward keeps x alone; the backward
runs the block again up to the last tensor it saves, the down projection's input (``fc_out``'s
GELU output; ``down_proj``'s product act(g)⊙u), packed before that projection's product runs:
so the rerun is every op but the last matrix product. ``selective`` is refused: it recomputes
an attention core, which the MLP has none of.

FLOPs: the rerun as backward terms (executed, not useful): GELU MLP fc_in's product, its bias
and GELU; gated, the gate's and up's products, their biases, the activation and the product.
FlopCounterMode counts the matrix products of the rerun exactly (tests/test_checkpoint_lm.py).
"""

from __future__ import annotations

from complexo.symbols import B, d, f, f_g, n


def _terms(side: str, bias: bool) -> dict:
    """The rerun's terms, name -> (expr, ops, note, matmul)."""
    from complexo.analyses.mlp import ACT_COST, ACT_OPS, LINEAR, MUL
    from complexo.checkpointing import AGAIN
    from complexo.conventions import ELEMENTWISE_FLOPS, GATE_FWD_FLOPS

    tokens, out = B * n, {}
    width = f if side == "gelu" else f_g
    linears = ("fc_in",) if side == "gelu" else ("gate_proj", "up_proj")
    for name in linears:
        out[f"recompute_{name}"] = (2 * tokens * d * width, LINEAR, f"{name}: {AGAIN}", True)
        if bias:
            out[f"recompute_{name}_bias"] = (ELEMENTWISE_FLOPS * tokens * width, LINEAR, "", False)
    act = "gelu" if side in ("gelu", "geglu") else "silu"
    out[f"recompute_{act}"] = (ACT_COST[side][0] * tokens * width, ACT_OPS[side], AGAIN, False)
    if side != "gelu":
        out["recompute_gate_product"] = (GATE_FWD_FLOPS * tokens * width, MUL, AGAIN, False)
    return out


def recomputed(t, side: str, bias: bool, mode: str) -> None:
    """``full``: the rerun's terms added to the backward; ``none``: nothing."""
    from complexo.checkpointing import add_recomputed

    if mode == "full":
        terms = _terms(side, bias)
        add_recomputed(t, terms, terms)


def names(side: str, bias: bool) -> tuple[str, ...]:
    return tuple(_terms(side, bias))


def notes(cfg, side: str, model) -> list[str]:
    """The rerun's FLOPs, and what the block keeps: x alone."""
    from complexo.checkpointing import rerun_note

    if cfg.checkpoint != "full":
        return []
    last = "fc_out" if side == "gelu" else "down_proj"
    what = f"the block again but {last}'s product"
    return [rerun_note("full", what, model, names(side, cfg.bias), cfg.values)]


def rerun(book, side: str, X, H) -> None:
    """The ledger's rerun before the block's backward: every tensor the block saves, made again
    (the gated MLP's g kept now: SiLU's or GELU's backward needs it)."""
    if side == "gelu":
        book.alloc("rerun: fc_in's output h", h=H)
        book.alloc("rerun: GELU's output a", a=H)
        return
    book.alloc("rerun: gate_proj's output g", g=H)
    book.alloc("rerun: act(g)", a=H)
    book.alloc("rerun: up_proj's output u", u=H)
    book.alloc("rerun: the product act(g)⊙u", p=H)


def forward(book, side: str, X, H) -> None:
    """The block's forward under the checkpoint: nothing saved, each hidden tensor held by a
    local name until ``block`` returns (the gate's g, a temporary, freed once activated)."""
    if side == "gelu":
        book.alloc("fc_in's output h", h=H)
        book.alloc("GELU's output a", a=H)
        book.alloc("fc_out's output", out=X)
        book.free("h", "a")
        return
    book.alloc("gate_proj's output g", g=H)
    book.alloc("act(g)", a=H)
    book.free("g")
    book.alloc("up_proj's output u", u=H)
    book.alloc("the product act(g)⊙u", p=H)
    book.alloc("down_proj's output", out=X)
    book.free("a", "u", "p")
