"""kvcache's proofs (:mod:`complexo.prove`): the reference decoder
(:mod:`complexo.blocks.transformer`) built with symbolic B, n tokens in the cache, h heads and
head size d/h (grouped-query: G and h/G; LLaMA's rotary pairs: d/h = 2·j), V, f (GPT-2's learned
positions: P) and a window W, and each of the three forwards the counters measure traced alone,
without autograd, as inference runs them: the decode step (one token at position n against the
cache), the same token without a cache (the n + 1 tokens again) and the prefill (n tokens into
an empty cache). Parameters and their bytes, and the cache's bytes (its tensors, the step's
buffers), are read off the same trace.

L layers are a Python loop, which a trace unrolls at one L: each proof is traced at L = 1 and
L = 2. Every layer is the same block, run on the same shapes, so every count of the trace is
a + b·L; each hand formula is of degree ≤ 1 in L too (tests/test_kvcache.py checks it), and two
affine functions equal at two Ls are equal at every L.

A window's min(n, W) and min(n + 1, W) are two variants, as the analysis has two formulas: the
cache not yet full (n < W, "window") and full (n ≥ W, "window full"), each traced where it
holds, its guards the sizes it holds for. A full window's prefill is traced past it (n > W),
so its claim leaves out n = W itself, where min(n, W) = n = W (the counters check that size)."""

from __future__ import annotations

from complexo.prove import Case, Dim, Symbolic, hand_from
from complexo.symbols import G, L, d, e, h

LAYERS = (1, 2)  # a + b·L, equal at two Ls: equal at all

# what each traced forward measures: result quantity -> traced quantity
RUNS = {
    "decode": {
        "decode_flops_per_token": "forward_matmul_flops",
        "params": "params",
        "weight_bytes": "param_bytes",
    },
    "no cache": {"decode_flops_per_token_no_cache": "forward_matmul_flops"},
    "prefill": {"prefill_flops": "forward_matmul_flops", "kv_cache_bytes": "buffer_bytes"},
}

UNTRACED = {
    "kv_cache_bytes_per_token": "one token's share of the proved kv_cache_bytes, which is "
    "B·min(n, W) times this same expression",
    "decode_bytes_per_token": "the fewest bytes a decode step moves (each weight and cached row "
    "read once): a traffic model, which no count of a trace on fake tensors sees",
    "prefill_bytes": "as decode_bytes_per_token",
}


def variant(cfg) -> str:
    spec = cfg.spec
    parts = [spec.arch]
    if spec.kv_heads is not None:
        parts.append("gqa")
    if spec.window is not None:
        parts.append("window full" if cfg.windowed else "window")
    if cfg.dtype == "int8":
        parts.append("int8")
    return " ".join(parts)


def cases(cfg) -> list[Case]:
    from complexo.analyses.kvcache import QUANTITIES, cost_model

    spec = cfg.spec
    model, _, _ = cost_model(spec, cfg.dtype, cfg.windowed)
    hs = Dim("j", 7, means=d / (2 * h)) if spec.arch == "llama" else Dim("hs", 7, means=d / h)
    dims = [Dim("B", 3), Dim("n", 11), hs, Dim("V", 13), Dim("f", 17)]
    if spec.learned_positions:
        dims.append(Dim("P", 29))
    if spec.kv_heads is not None:  # h = G·(h/G): G divides h by construction
        dims += [Dim("G", 2), Dim("q", 5, means=h / G)]
    else:
        dims.append(Dim("h", 5))
    if spec.window is not None:  # hints on the variant's side of min(n, W)
        dims.append(Dim("W", 4 if cfg.windowed else 19))
    int8 = cfg.dtype == "int8"
    out = []
    for layers in LAYERS:
        for run, traced in RUNS.items():
            out.append(
                Case(
                    tuple(dims),
                    _build(spec, layers, run, int8),
                    hand_from(QUANTITIES, model, traced),
                    traced,
                    side="",
                    # int8: values 1 byte, scales and weights bf16 (2), in an fp32 trace
                    dtype="float32" if int8 else "bfloat16",
                    at={L: layers, **({e: 1} if int8 else {})},
                    backward=False,
                )
            )
    return out


def _build(spec, layers: int, run: str, int8: bool):
    def build(size):
        import dataclasses

        import torch

        from complexo.blocks.transformer import CachedStep, KVCache, Transformer

        heads = size["G"] * size["q"] if "G" in size else size["h"]
        width = heads * (2 * size["j"] if "j" in size else size["hs"])
        n = size["n"]
        sized = dataclasses.replace(
            spec,
            layers=layers,
            dim=width,
            heads=heads,
            vocab=size["V"],
            ctx=size.get("P", n + 1),  # LLaMA's rotary tables need no context size
            mlp=size["f"],
            kv_heads=size.get("G"),
            window=size.get("W"),
        )
        model = Transformer(sized).eval()
        if int8:  # weights in bf16 beside an int8 cache
            model = model.to(torch.bfloat16)
        dtype = torch.int8 if int8 else torch.get_default_dtype()
        batch = size["B"]
        if run == "decode":  # the next token, at position n, against the cache
            step = CachedStep(model, KVCache(sized, batch, n + 1, dtype), pos=n)
            tokens = 1
        elif run == "no cache":  # the prefix again, and the new token
            step, tokens = CachedStep(model, None), n + 1
        else:  # the prompt's n tokens into an empty cache
            step, tokens = CachedStep(model, KVCache(sized, batch, n, dtype)), n
        return step, (torch.zeros(batch, tokens, dtype=torch.long),)

    return build


SYMBOLIC = Symbolic(
    variant=variant,
    cases=cases,
    variants={
        "llama": {"model": "llama-7b"},
        "llama gqa": {"model": "llama-3-8b"},
        "gpt2": {"model": "gpt2"},
        "llama gqa window": {"model": "mistral-7b", "context": 1000},
        "llama gqa window full": {"model": "mistral-7b"},
        "llama int8": {"model": "llama-7b", "dtype": "int8"},
    },
    untraced=UNTRACED,
    note="L layers are a Python loop, which a trace unrolls at one L: every case is traced at "
    "L = 1 and L = 2. Each layer is the same block on the same shapes, so each traced count is "
    "a + b·L, as each hand formula is (of degree ≤ 1 in L, tests/test_kvcache.py): equal at two "
    "Ls, equal at every L.",
    # one flag apart from another variant's trace: the full suite (make test-all) runs them
    slow=frozenset({"llama", "llama int8"}),
    where={
        # the decode step's cache of min(n + 1, W) rows holds n + 1 ≤ W; the prefill's n ≤ W
        "llama gqa window": "(W - n >= 1) and (W >= n)",
        # the decode step holds n ≥ W; the prefill traced past the window, n > W
        "llama gqa window full": "(W - n < 1) and (W < n)",
    },
)
