"""KV-cache decoding: the incremental decoder equals a full causal forward token by token, and
every formula equals what the reference allocates and what FlopCounterMode counts."""

import pytest
import torch
from budget import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from complexo.analyses import kvcache
from complexo.blocks.transformer import KVCache, ModelConfig, Transformer
from complexo.counting import unchecked


def decode_incrementally(model, idx, cache, prompt):
    out = [model(idx[:, :prompt], cache=cache, pos=0)]
    out += [model(idx[:, t : t + 1], cache=cache, pos=t) for t in range(prompt, idx.shape[1])]
    return torch.cat(out, dim=1)


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig("gpt2", 2, 8, 2, 11, 16, 12),
        ModelConfig("llama", 2, 8, 2, 11, 16, 12),
        ModelConfig("llama", 2, 16, 4, 11, 16, 12, kv_heads=2),  # grouped-query
        ModelConfig("llama", 2, 16, 4, 11, 16, 12, kv_heads=1),  # multi-query
        ModelConfig("llama", 2, 16, 4, 11, 16, 12, kv_heads=2, window=3),  # rolling buffer
    ],
)
@pytest.mark.parametrize("prompt", [1, 4])
def test_incremental_decoding_equals_the_full_forward(cfg, prompt):
    torch.manual_seed(0)
    model = Transformer(cfg).double().eval()
    idx = torch.randint(0, cfg.vocab, (2, 9))
    with torch.no_grad():
        full = model(idx)
        step = decode_incrementally(model, idx, KVCache(cfg, 2, 9, torch.float64), prompt)
    torch.testing.assert_close(step, full)


@pytest.mark.parametrize("chunk", [2, 5])
def test_a_rolling_buffer_fed_in_chunks_equals_the_windowed_full_forward(chunk):
    torch.manual_seed(0)
    cfg = ModelConfig("gpt2", 2, 8, 2, 11, 16, 12, window=3)
    model = Transformer(cfg).double().eval()
    idx = torch.randint(0, cfg.vocab, (2, 11))
    cache = KVCache(cfg, 2, 11, torch.float64)
    assert cache.k[0].shape[2] == 3  # min(capacity 11, W 3) rows
    with torch.no_grad():
        full = model(idx)
        steps = [model(idx[:, t : t + chunk], cache=cache, pos=t) for t in range(0, 11, chunk)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full)


def test_the_window_hides_keys_older_than_w():
    torch.manual_seed(0)
    model = Transformer(ModelConfig("llama", 1, 8, 2, 11, 16, 12, window=3)).double()
    idx = torch.randint(0, 11, (1, 8))
    changed = idx.clone()
    changed[0, 0] = (idx[0, 0] + 1) % 11
    out, other = model(idx)[0], model(changed)[0]
    # one layer, W = 3: token 0 reaches positions 0, 1, 2 only
    assert not torch.allclose(out[2], other[2])
    torch.testing.assert_close(out[3:], other[3:])


def test_int8_cache_decodes_close_to_the_full_forward():
    torch.manual_seed(0)
    cfg = ModelConfig("llama", 2, 16, 4, 11, 16, 12, kv_heads=2)
    model = Transformer(cfg).double().eval()
    idx = torch.randint(0, cfg.vocab, (2, 9))
    with torch.no_grad():
        full = model(idx)
        step = decode_incrementally(model, idx, KVCache(cfg, 2, 9, torch.int8), 4)
    assert (step - full).abs().max() < 0.01 * full.abs().max()  # int8 rounding, 1/254 per row


def test_grouped_query_heads_equal_full_heads_when_g_is_h():
    torch.manual_seed(0)
    full = Transformer(ModelConfig("llama", 1, 8, 2, 11, 16, 12)).double()
    same = Transformer(ModelConfig("llama", 1, 8, 2, 11, 16, 12, kv_heads=2)).double()
    same.load_state_dict(full.state_dict())
    idx = torch.randint(0, 11, (1, 6))
    torch.testing.assert_close(same(idx), full(idx))


models = st.builds(
    lambda arch, layers, head, heads, share, vocab, mlp, context, batch, dtype, window: (
        kvcache.Config(
            arch=arch,
            layers=layers,
            dim=2 * head * heads * share,
            heads=heads * share,
            kv_heads=heads if share > 1 else None,
            vocab=vocab,
            ctx=64,
            mlp=mlp,
            context=context,
            batch=batch,
            dtype=dtype,
            window=window,
        )
    ),
    st.sampled_from(["gpt2", "llama"]),
    st.integers(1, 3),
    st.integers(1, 3),  # half head size (rotary pairs)
    st.integers(1, 3),  # kv heads
    st.integers(1, 3),  # query heads per kv head
    st.integers(2, 30),
    st.integers(1, 24),
    st.integers(1, 40),
    st.integers(1, 3),
    st.sampled_from(["fp32", "fp16", "bf16", "int8"]),
    st.one_of(st.none(), st.integers(1, 12)),  # sliding window W: binds when n ≥ W
)


@settings(max_examples=examples(10, 25))
@given(models)
def test_kvcache_formulas_equal_the_measurements(cfg):
    result = kvcache.analyse(cfg)
    for q in result.quantities:
        for counter, value in q.measured.items():
            if value is None or value == q.value:
                continue
            assert counter == "fvcore" and q.name == "decode_flops_per_token_no_cache", q
            assert all(g.reason != "unexplained" for g in q.gaps if g.counter == counter), q


def test_the_cache_trades_quadratic_recompute_for_linear_reads():
    with unchecked():  # formula values, big-O and facts alone: no counter runs
        r = kvcache.analyse(kvcache.Config(model="llama-7b", context=2048, gpu="h100-sxm"))
    q = {x.name: x.value for x in r.quantities}
    # k and v, 32 layers, 4096 wide, bf16: 2·32·4096·2 = 524,288 bytes per token
    assert q["kv_cache_bytes_per_token"] == 524_288 and q["kv_cache_bytes"] == 2048 * 524_288
    assert r.summary.big_o["decode_flops_per_token"].startswith("O(B·L·d·n + B·L·d²")
    assert "B·L·d·n²" in r.summary.big_o["decode_flops_per_token_no_cache"]
    assert q["decode_flops_per_token_no_cache"] > 1000 * q["decode_flops_per_token"]
    assert "memory-bound" in r.facts["roofline"] and "126,882 tokens" in r.facts["fits"]


def test_mistral_rolling_buffer_holds_the_window_not_the_context():
    # n = 8192 tokens, W = 4096
    with unchecked():  # formula values and big-O alone: no counter runs
        r = kvcache.analyse(kvcache.Config(model="mistral-7b", gpu="h100-sxm"))
    q = {x.name: x.value for x in r.quantities}
    # k and v, 32 layers, 8 kv heads of 128, bf16: 2·32·8·128·2 = 131,072 bytes per token
    assert q["kv_cache_bytes_per_token"] == 131_072
    # min(8192, 4096) = 4096 tokens: 4096·131,072 = 536,870,912 (not 8192·131,072)
    assert q["kv_cache_bytes"] == 536_870_912
    # weights: L·(2·(2d² + 2d·G·d/h) + 6·d·f) + 2·d·V = 32·(2·(33,554,432 + 8,388,608)
    #   + 352,321,536) + 262,144,000 = 14,220,787,712; attention over min(8193, 4096) keys:
    #   4·L·W·d = 4·32·4096·4096 = 2,147,483,648
    assert q["decode_flops_per_token"] == 14_220_787_712 + 2_147_483_648
    assert "W" in r.summary.big_o["kv_cache_bytes"] and "n" not in r.summary.big_o["kv_cache_bytes"]
    # (80e9 − 2·7,241,732,096) // (4096·131,072) = 65,516,535,808 // 536,870,912 = 122
    assert "any context" in r.facts["fits"] and "batch up to 122 " in r.facts["fits"]


def test_the_terms_figure_gives_each_step_its_own_shares():
    """decode., no_cache. and prefill. are three steps: each bar's share is of its own step, so
    the figure says of decode.weights what the summary says (its share of decode's FLOPs), not a
    third of that as a share of all three steps together."""
    from complexo import analyse
    from complexo.plot import figure

    r = analyse("kvcache", check=False)
    _, (ax,) = figure()
    r.plot(ax=[ax])
    name, _, share = r.summary.dominant
    assert name == "decode.weights"
    labels = [t.get_text().strip() for t in ax.texts]
    assert f"{float(share):.1%} of decode" in labels
    # shares within each step add up to 100%
    decode = [float(x.split("%")[0]) for x in labels if x.endswith("of decode")]
    assert abs(sum(decode) - 100) < 0.2


def test_two_layer_counts_prove_every_l():
    """The proofs trace L = 1 and L = 2 (a trace unrolls the layers' loop): enough for every L
    only if each hand formula is a + b·L, as the trace's counts are (every layer the same block
    on the same shapes). Each proved formula is of degree ≤ 1 in L, every proved quantity is
    traced at two Ls, and a third L (3) is proved too, untraced before."""
    from dataclasses import replace

    import sympy

    from complexo.analyses import kvcache_proof
    from complexo.prove import prove
    from complexo.symbols import B, G, L, V, d, f, h, n

    a = kvcache.ANALYSIS
    for variant, fields in kvcache_proof.SYMBOLIC.variants.items():
        cases = a.symbolic.cases(a.make(**fields))
        for case in cases:
            assert all(sympy.degree(sympy.expand(f), L) <= 1 for f in case.hand.values()), variant
        for quantity in {q for case in cases for q in case.traced}:
            assert {c.at[L] for c in cases if quantity in c.traced} == {1, 2}, quantity
    cfg = a.make(model="llama-3-8b")
    three = [  # the first three cases: L = 1's decode, no cache, prefill
        replace(c, at={**c.at, L: 3}, build=kvcache_proof._build(cfg.spec, 3, run, False))
        for c, run in zip(a.symbolic.cases(cfg)[:3], kvcache_proof.RUNS, strict=True)
    ]
    report = prove(replace(a, symbolic=replace(a.symbolic, cases=lambda cfg: three)), cfg)
    assert report.proved and {c.method for c in report.checks} == {"simplify, at L = 3"}
    # e.g. the decode step at L = 3: 3 layers of q, k, v and out projections
    # 2·(2d² + 2·d·G·d/h) and SwiGLU 6·d·f, lm_head 2·d·V, attention 4·B·(n + 1)·d per layer
    decode = next(c for c in report.checks if c.quantity == "decode_flops_per_token")
    per_layer = 2 * (2 * d**2 + 2 * d * G * d / h) + 6 * d * f
    expected = B * (3 * per_layer + 2 * d * V) + 3 * 4 * B * (n + 1) * d
    assert sympy.simplify(decode.traced - expected) == 0


def test_the_cached_step_holds_the_cache_as_buffers_and_decodes_as_the_model():
    from complexo.blocks.transformer import CachedStep

    torch.manual_seed(0)
    cfg = ModelConfig("llama", 2, 16, 4, 11, 16, 12, kv_heads=2)
    model = Transformer(cfg).eval()
    idx = torch.randint(0, 11, (2, 6))
    cache, other = KVCache(cfg, 2, 6, torch.float32), KVCache(cfg, 2, 6, torch.float32)
    step = CachedStep(model, cache, pos=0)
    # 2 layers × k and v, each (B, G, capacity, hs) = (2, 2, 6, 4)
    assert [tuple(b.shape) for b in step.buffers()] == [(2, 2, 6, 4)] * 4
    assert all(b is t for b, t in zip(step.buffers(), cache.tensors(), strict=True))
    assert torch.equal(step(idx[:, :5]), model(idx[:, :5], cache=other, pos=0))
    step.pos = 5
    assert torch.equal(step(idx[:, 5:]), model(idx[:, 5:], cache=other, pos=5))
    assert not list(CachedStep(model, None).buffers())
