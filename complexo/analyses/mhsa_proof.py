"""mhsa's proofs (:mod:`complexo.prove`): the reference block of a config's variant built with
symbolic B, n, h and head size hs = d/h (grouped-query: G and h/G; cross-attention: m and d_c;
a window: W), traced, and its hand formulas proved equal for all shapes."""

from __future__ import annotations

import sympy

from complexo.prove import ELEMENTWISE, MATMULS, Case, Dim, Symbolic, hand_from
from complexo.symbols import G, d, h

TRACED = MATMULS
ALL_FLOPS = ELEMENTWISE  # the element-wise ops by complexo's conventions

UNTRACED = {
    "forward_flops": "proved, element-wise ops by complexo's conventions, for the naive "
    "variants but ALiBi and grouped heads; elsewhere only its matmul part: SDPA's fused kernel "
    "is one op with no element-wise convention, ALiBi's bias build runs abs, neg and pow, which "
    "have none, and grouped heads' backward sums h/G copies, h/G − 1 adds per element in the "
    "hand formula, h/G by the trace's sum convention (2·B·n·G·d/h apart)",
    "backward_flops": "as forward_flops",
    "attention_matrix_bytes": "one of the saved tensors (the softmax's output), inside the "
    "proved activation bytes",
    "kv_bytes": "what a decoder would cache: k_proj's and v_proj's outputs, no total of the trace",
    "attention_hbm_bytes": "a kernel's device-memory traffic, which no trace on fake tensors sees",
    "useful_score_flops": "what a banded or tile-skipping kernel would execute; the reference "
    "block runs dense",
}


def variant(cfg) -> str:
    parts = [cfg.impl]
    if cfg.window is not None:
        parts.append("window")
    elif cfg.causal:
        parts.append("causal")
    parts += [
        name
        for name, on in (
            ("alibi", cfg.alibi),
            ("gqa", cfg.kv_heads is not None),
            ("cross", cfg.kv_seq is not None),
            ("d_c", cfg.kv_dim is not None),
            ("no bias", not cfg.bias),
        )
        if on
    ]
    pos = getattr(cfg, "pos", "none")
    if pos not in ("none", "alibi"):  # ALiBi is the alibi variant already
        parts.append(f"pos {pos}")
    return " ".join(parts)


def cases(cfg) -> list[Case]:
    from complexo.analyses.mhsa import QUANTITIES

    pos = getattr(cfg, "pos", "none")
    if pos == "rope":  # rotated in pairs: hs = 2·j
        dims = [Dim("B", 3), Dim("n", 11), Dim("j", 7, means=d / (2 * h))]
    else:
        dims = [Dim("B", 3), Dim("n", 11), Dim("hs", 7, means=d / h)]
    if pos in ("learned", "sinusoidal", "rope"):
        dims.append(Dim("P", 19))  # the table's positions n_max
    if cfg.kv_heads is not None:  # h = G·(h/G): G divides h by construction
        dims += [Dim("G", 2), Dim("q", 5, means=h / G)]
    else:
        dims.append(Dim("h", 5))
    if cfg.window is not None:
        dims.append(Dim("W", 4))
    if cfg.kv_seq is not None:
        dims.append(Dim("m", 13))
    if cfg.kv_dim is not None:
        dims.append(Dim("d_c", 17))

    def build(size):
        import torch

        from complexo.blocks.attention import IMPLEMENTATIONS

        heads = size["G"] * size["q"] if "G" in size else size["h"]
        width = heads * (2 * size["j"] if "j" in size else size["hs"])
        context = size.get("d_c", width) if "m" in size else None
        block = IMPLEMENTATIONS[cfg.impl](
            width,
            heads,
            bias=cfg.bias,
            causal=cfg.causal,
            kv_heads=size.get("G"),
            window=size.get("W"),
            alibi=cfg.alibi,
            context_dim=context,
            pos=pos,
            max_seq=size.get("P"),
        )
        x = torch.empty(size["B"], size["n"], width, requires_grad=True)
        if context is None:
            return block, (x,)
        c = torch.empty(size["B"], size["m"], context, requires_grad=True)
        return block, (x, c)

    traced = dict(TRACED)
    if cfg.impl == "naive" and not cfg.alibi and cfg.kv_heads is None:
        traced |= ALL_FLOPS
    hand = hand_from(QUANTITIES, cfg.model(), traced)
    return [Case(tuple(dims), build, {k: sympy.sympify(v) for k, v in hand.items()}, traced)]


SYMBOLIC = Symbolic(
    variant=variant,
    cases=cases,
    variants={
        "naive": {"impl": "naive"},
        "sdpa": {"impl": "sdpa"},
        "naive causal": {"impl": "naive", "causal": True},
        "sdpa causal": {"impl": "sdpa", "causal": True},
        "naive gqa": {"impl": "naive", "kv_heads": 4},
        "sdpa gqa": {"impl": "sdpa", "kv_heads": 4},
        "naive window": {"impl": "naive", "window": 256},
        "naive alibi": {"impl": "naive", "alibi": True},
        "naive causal no bias": {"impl": "naive", "causal": True, "bias": False},
        "naive cross d_c": {"impl": "naive", "kv_seq": 77, "kv_dim": 768},
        "sdpa cross": {"impl": "sdpa", "kv_seq": 77},
        "naive pos learned": {"impl": "naive", "pos": "learned"},
        "naive pos sinusoidal": {"impl": "naive", "pos": "sinusoidal"},
        "naive pos rope": {"impl": "naive", "pos": "rope"},
    },
    untraced=UNTRACED,
    # one flag apart from another variant's trace: the full suite (make test-all) runs it
    slow=frozenset({"naive causal no bias"}),
    where={
        "naive pos learned": "(P >= n)",
        # the sinusoidal table's sin columns ⌈d/2⌉ and cos columns ⌊d/2⌋, as the trace guards
        "naive pos sinusoidal": "(ceiling(d/2) >= floor(d/2), P >= n)",
        "naive pos rope": "(P >= n)",
    },
)
