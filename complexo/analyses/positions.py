"""Positional encodings' cost terms, for ``complexo mhsa --pos``: what each encoding adds to the
block (reference modules: :mod:`complexo.blocks.positions`). ALiBi's terms are in
:mod:`complexo.analyses.mhsa_cost` (a bias on the scores, B·h·n² adds).

Symbols: B, n, d, h, G, e as in :mod:`complexo.analyses.mhsa`; P = n_max, the positions a table
holds (``--max-seq``, default n). Conventions (no matrix products here: each multiply or add
is 1 FLOP, as :mod:`complexo.conventions` counts element-wise work):

- learned, sinusoidal: x + table[:n], 1 FLOP per element of x (B·n·d). A learned table's
  gradient is dY summed over the batch, 1 per element (B·n·d); a sinusoidal table takes none.
- RoPE: each pair (x1, x2) of a head's features becomes (x1·cos − x2·sin, x1·sin + x2·cos):
  4 multiplies + 2 adds = 6 FLOPs per pair, 3 per element, on q (B·n·d elements) and on k
  (B·n·G·d/h: before the G k/v heads are shared). Backward: the transposed rotation, again 6 per
  pair on dq and dk (autograd's subtraction also negates its gradient: 1 per pair not counted).
- Tables: learned P·d parameters; sinusoidal a (P, d) buffer; RoPE cos and sin (P, d/h/2) each,
  P·d/h elements, saved by RoPE's multiplies for the backward (views of the buffers).
"""

from __future__ import annotations

import sympy

from complexo.conventions import ELEMENTWISE_FLOPS
from complexo.cost import Kind, Term
from complexo.symbols import B, G, P, d, e, h, n

POSITIONS = ("none", "learned", "sinusoidal", "rope", "alibi")
ADDED = ("learned", "sinusoidal")  # added to the input, once per token
ROPE_PAIR_FLOPS = sympy.Integer(6)  # 4 multiplies + 2 adds per rotated pair of features
ROPE_FLOPS = ROPE_PAIR_FLOPS / 2  # per element of q or k
# backward, per element: the transposed rotation (g1·cos + g2·sin, g2·cos − g1·sin: 3) and the
# add that joins the two halves' gradients into q's (autograd sums x[..., :hs/2]'s and
# x[..., hs/2:]'s, each padded to the whole width: 1); its negation has no FLOP convention
ROPE_BWD_FLOPS = ROPE_FLOPS + 1
TABLE = frozenset({"positions"})  # the Kind.MEMORY tag of the cached table

ADD = ("aten::add", "aten.add")
ROPE_OPS = ("aten::mul", "aten.mul", "aten::sub", "aten.sub", "aten::add", "aten.add")
# the profiler's names of what runs inside the positions' range
PROFILED = ("aten::add", "aten::mul", "aten::sub", "aten::cat")


def position_terms(pos: str, gqa: bool = False) -> list[Term]:
    """The terms ``pos`` adds to an MHSA block (none for "none"; ALiBi's are mhsa_cost's).

    >>> from complexo.cost import plain
    >>> [(t.kind.value, t.name, plain(t.expr)) for t in position_terms("rope")][:2]
    [('forward_flops', 'rope_q', '3·B·d·n'), ('forward_flops', 'rope_k', '3·B·d·n')]
    """
    hs = d / h
    kv = G * hs if gqa else d  # width of k: G heads of d/h
    x = B * n * d  # elements of the block's input
    if pos in ADDED:
        learned = pos == "learned"
        terms = [
            Term("pos_add", Kind.FORWARD, ELEMENTWISE_FLOPS * x, ops=ADD, note="x + table[:n]"),
            Term("pos_table", Kind.MEMORY, P * d * e, note=_TABLE_NOTE[pos], tags=TABLE),
        ]
        if learned:
            grad = Term("pos_grad", Kind.BACKWARD, ELEMENTWISE_FLOPS * x, ops=("aten.sum",))
            terms += [grad, Term("positions", Kind.PARAMS, P * d, note="the (P, d) table")]
        return terms
    if pos == "rope":
        rotate = "(x1·cos − x2·sin, x1·sin + x2·cos)"
        transposed = "the transposed rotation, and the add joining the two halves' gradients"
        return [
            Term("rope_q", Kind.FORWARD, ROPE_FLOPS * x, ops=ROPE_OPS, note=rotate),
            Term("rope_k", Kind.FORWARD, ROPE_FLOPS * B * n * kv, ops=ROPE_OPS, note=rotate),
            Term("rope_q", Kind.BACKWARD, ROPE_BWD_FLOPS * x, ops=ROPE_OPS, note=transposed),
            Term(
                "rope_k", Kind.BACKWARD, ROPE_BWD_FLOPS * B * n * kv, ops=ROPE_OPS, note=transposed
            ),
            Term("pos_table", Kind.MEMORY, P * hs * e, note=_TABLE_NOTE[pos], tags=TABLE),
        ]
    return []


_TABLE_NOTE = {
    "learned": "(P, d) parameters",
    "sinusoidal": "(P, d) buffer, built once",
    "rope": "cos and sin, (P, d/h/2) each, built once",
}


def position_note(pos: str, cfg, values: dict, model) -> str:
    """What the encoding costs at these sizes, in one line (ALiBi's is mhsa's own)."""
    from complexo.cost import evaluate
    from complexo.units import human

    def total(kind, names):
        return sum(evaluate(model.term(kind, t).expr, values) for t in names)

    table = human(total(Kind.MEMORY, ["pos_table"]), "byte")
    rows = values[P]
    where = "here at the block's input; a model adds it once, at the embedding, not in every layer"
    if pos == "learned":
        return (
            f"learned positions: a ({rows}, {cfg.dim}) table, {rows * cfg.dim:,} parameters "
            f"({table}); x + table[:n] is {human(total(Kind.FORWARD, ['pos_add']), 'flop')} "
            f"(1 per element), its gradient Σ over the batch as much; {where}. No position "
            f"beyond {rows} can be encoded."
        )
    if pos == "sinusoidal":
        return (
            f"sinusoidal positions: no parameters; a fixed ({rows}, {cfg.dim}) buffer ({table}), "
            f"sin(i·θ_j) and cos(i·θ_j), θ_j = 10000^(−2j/d); the add is "
            f"{human(total(Kind.FORWARD, ['pos_add']), 'flop')} (1 per element), no gradient; "
            f"{where}."
        )
    fwd = total(Kind.FORWARD, ["rope_q", "rope_k"])
    return (
        f"RoPE: no parameters; q and k of every head rotated pair by pair, 6 FLOPs per pair "
        f"(4 × and 2 +), {human(fwd, 'flop')} forward and as much backward (k on its "
        f"{cfg.kv_heads or cfg.heads} k/v heads); cos and sin tables ({rows}, "
        f"{cfg.dim // cfg.heads // 2}) each, {table}, kept for the backward. Applied in every "
        "layer; scores then depend on i − j only. FlopCounterMode and fvcore count no "
        "element-wise op: these FLOPs are the formula's alone."
    )
