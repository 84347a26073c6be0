"""MHSA formulas against counts the formulas did not produce: FlopCounterMode, fvcore,
autograd's saved tensors and the modules' own parameters; and the reference blocks against
nn.MultiheadAttention numerically."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from complexo.analyses.mhsa import Config, build, forward_peak
from complexo.cost import Kind, evaluate
from complexo.measure import count_fvcore, cpu_attention_formulas, measure_torch, param_counts


@st.composite
def configs(draw):
    """Random blocks across every variant: grouped-query heads and cross-attention on either
    implementation; the sliding window and ALiBi on the explicit self-attention."""
    heads, impl = draw(st.integers(1, 4)), draw(st.sampled_from(["naive", "sdpa", "flash"]))
    seq = draw(st.integers(1, 48))
    cross = draw(st.one_of(st.none(), st.integers(1, 24)))  # m context tokens
    naive = impl == "naive" and cross is None
    dim = draw(st.integers(1, 8)) * heads
    # positions: none in cross-attention; ALiBi on the explicit block; RoPE on even head sizes
    kinds = ["none", "learned", "sinusoidal", *(["rope"] if dim // heads % 2 == 0 else [])]
    pos = draw(st.sampled_from(kinds + (["alibi"] if naive else []))) if cross is None else "none"
    tables = pos in ("learned", "sinusoidal", "rope")  # n_max: the positions a table holds
    return Config(
        batch=draw(st.integers(1, 3)),
        seq=seq,
        dim=dim,
        heads=heads,
        dtype=draw(st.sampled_from(["fp32", "fp16", "bf16"])),
        impl=impl,
        causal=draw(st.booleans()) if cross is None else False,
        bias=draw(st.booleans()),
        kv_heads=draw(st.sampled_from([None, *(g for g in range(1, heads + 1) if heads % g == 0)])),
        window=draw(st.one_of(st.none(), st.integers(1, seq + 3))) if naive else None,
        alibi=draw(st.booleans()) if naive and pos in ("none", "alibi") else False,
        pos=pos,
        max_seq=draw(st.one_of(st.none(), st.integers(seq, seq + 5))) if tables else None,
        kv_seq=cross,
        kv_dim=draw(st.one_of(st.none(), st.integers(1, 9))) if cross else None,
    )


configs = configs()


def formula(cfg: Config, kind: Kind, matmul_only: bool = False) -> int:
    return evaluate(cfg.model().total(kind, matmul_only=matmul_only), cfg.values)


@given(configs)
def test_matmul_flops_equal_flopcountermode(cfg):
    block, inputs = build(cfg)
    # On SDPA's math path (the meta device's own dispatch) FlopCounterMode sees every matmul.
    run = measure_torch(lambda: block(*inputs), list(block.parameters()), attention="math")
    assert run.forward.total == formula(cfg, Kind.FORWARD, matmul_only=True)
    # Backward: the math path stores P, the fused kernel recomputes Q·Kᵀ (2·B·n·m·d more, m = n
    # in self-attention).
    keys = cfg.kv_seq or cfg.seq
    recompute = 0 if cfg.impl == "naive" else 2 * cfg.batch * cfg.seq * keys * cfg.dim
    assert run.backward.total == formula(cfg, Kind.BACKWARD, matmul_only=True) - recompute


@given(configs)
def test_fused_kernel_flops_equal_torch_own_sdpa_formulas(cfg):
    block, inputs = build(cfg)
    run = measure_torch(
        lambda: block(*inputs), list(block.parameters()), custom_mapping=cpu_attention_formulas()
    )
    assert run.forward.total == formula(cfg, Kind.FORWARD, matmul_only=True)
    assert run.backward.total == formula(cfg, Kind.BACKWARD, matmul_only=True)


@given(configs)
def test_matmul_flops_equal_fvcore_where_it_counts(cfg):
    block, inputs = build(cfg)
    fv = count_fvcore(block, tuple(t.detach() for t in inputs))
    expected = formula(cfg, Kind.FORWARD, matmul_only=True)
    if cfg.fused:
        # fvcore skips aten::scaled_dot_product_attention: Q·Kᵀ and A·V, 2·2·B·n·m·d
        assert "aten::scaled_dot_product_attention" in fv.uncounted_ops
        expected -= 4 * cfg.batch * cfg.seq * (cfg.kv_seq or cfg.seq) * cfg.dim
    else:
        assert {"aten::softmax", "aten::mul"} <= fv.uncounted_ops
    assert fv.total == expected


@given(configs)
def test_activation_bytes_equal_saved_tensors(cfg):
    block, inputs = build(cfg)
    # weights and buffers (RoPE's cos and sin) are held anyway: saved, they are no activation
    run = measure_torch(lambda: block(*inputs), [*block.parameters(), *block.buffers()])
    assert run.saved_bytes == formula(cfg, Kind.ACTIVATION)


@given(configs)
def test_params_equal_module_and_fvcore_counts(cfg):
    block, _ = build(cfg)
    expected = formula(cfg, Kind.PARAMS)
    assert param_counts(block) == {"torch": expected, "fvcore": expected}
    if cfg.kv_heads is None:  # k and v of width d from the context's d_c: kdim = vdim = d_c
        width = cfg.kv_dim or cfg.dim
        mha = torch.nn.MultiheadAttention(
            cfg.dim, cfg.heads, bias=cfg.bias, kdim=width, vdim=width, device="meta"
        )
        table = cfg.dim * (cfg.max_seq or cfg.seq) if cfg.pos == "learned" else 0  # P·d
        assert sum(p.numel() for p in mha.parameters()) + table == expected


@given(configs)
def test_every_counter_gap_is_attributed_to_an_op(cfg):
    from complexo.analyses.mhsa import analyse

    result = analyse(cfg)
    for q in result.quantities:
        assert not [g for g in q.gaps if g.reason == "unexplained"], (q.name, q.gaps)
        for counter, m in q.measured.items():
            if m is not None:
                assert m + sum(g.value for g in q.gaps if g.counter == counter) == q.value


def test_fused_dispatch_on_meta_saves_what_a_real_cpu_run_saves():
    """The meta-device emulation of SDPA's CPU kernel against the real kernel on small tensors."""
    cfg = Config(batch=2, seq=24, dim=32, heads=4, impl="sdpa", causal=True)
    for device in ("meta", "cpu"):
        block, (x,) = build(cfg, device=device)
        run = measure_torch(lambda: block(x), list(block.parameters()))  # noqa: B023
        shapes = sorted((s, dt) for s, dt, _ in run.saved)
        if device == "meta":
            meta_shapes, meta_bytes = shapes, run.saved_bytes
    assert shapes == meta_shapes and run.saved_bytes == meta_bytes


def test_flopcountermode_misses_sdpa_on_real_cpu():
    """The blind spot the output reports exists on real CPU tensors, not only on meta."""
    cfg = Config(batch=1, seq=16, dim=16, heads=2, impl="sdpa")
    block, (x,) = build(cfg, device="cpu")
    run = measure_torch(lambda: block(x), list(block.parameters()), attention="math")
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in run.forward.uncounted_ops
    # only the four projections: 4 · 2·B·n·d²
    assert run.forward.total == 4 * 2 * 1 * 16 * 16**2


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_reference_blocks_match_nn_multiheadattention(causal, bias):
    torch.manual_seed(0)
    cfg = Config(batch=2, seq=7, dim=12, heads=3, causal=causal, bias=bias)
    naive, (x,) = build(Config(**{**cfg.__dict__, "impl": "naive"}), device="cpu")
    sdpa, _ = build(Config(**{**cfg.__dict__, "impl": "sdpa"}), device="cpu")
    naive, sdpa, x = naive.double(), sdpa.double(), x.detach().double()
    sdpa.load_state_dict(naive.state_dict())
    mha = torch.nn.MultiheadAttention(12, 3, bias=bias, batch_first=True).double()
    with torch.no_grad():
        mha.in_proj_weight.copy_(
            torch.cat([naive.q_proj.weight, naive.k_proj.weight, naive.v_proj.weight])
        )
        mha.out_proj.weight.copy_(naive.out_proj.weight)
        if bias:
            mha.in_proj_bias.copy_(
                torch.cat([naive.q_proj.bias, naive.k_proj.bias, naive.v_proj.bias])
            )
            mha.out_proj.bias.copy_(naive.out_proj.bias)
    mask = torch.ones(7, 7, dtype=torch.bool).triu(1) if causal else None
    expected, _ = mha(x, x, x, attn_mask=mask, need_weights=False)
    torch.testing.assert_close(naive(x), expected)
    torch.testing.assert_close(sdpa(x), expected)
    # and the future does not leak into the past under --causal
    if causal:
        x2 = x.clone()
        x2[:, -1] += 1.0
        torch.testing.assert_close(naive(x2)[:, :-1], naive(x)[:, :-1])


def test_sdpa_scale_matches_explicit_scale():
    q, k, v = torch.randn(3, 1, 2, 5, 8, dtype=torch.float64)
    explicit = F.softmax(q @ k.transpose(-2, -1) / 8**0.5, dim=-1) @ v
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v), explicit)


def _block(cfg: Config, seed: int = 0):
    torch.manual_seed(seed)
    block, (x,) = build(cfg, device="cpu")
    return block.double(), x.detach().double()


@pytest.mark.parametrize("window", [7, 8, 30])
def test_a_window_as_long_as_the_sequence_is_the_causal_mask(window):
    causal, x = _block(Config(batch=2, seq=7, dim=12, heads=3, causal=True))
    windowed, _ = _block(Config(batch=2, seq=7, dim=12, heads=3, window=window))
    windowed.load_state_dict(causal.state_dict())
    torch.testing.assert_close(windowed(x), causal(x))


def test_a_window_of_one_sees_only_its_own_token():
    block, x = _block(Config(batch=2, seq=5, dim=8, heads=2, window=1))
    torch.testing.assert_close(block(x), block.out_proj(block.v_proj(x)))


def test_a_window_hides_keys_further_back():
    block, x = _block(Config(batch=1, seq=9, dim=8, heads=2, window=3))
    changed = x.clone()
    changed[:, :5] += 1.0  # tokens 0..4: outside the window of queries 7 and 8
    torch.testing.assert_close(block(changed)[:, 7:], block(x)[:, 7:])


def test_grouped_query_attention_is_mhsa_with_shared_k_and_v_heads():
    gqa, x = _block(Config(batch=2, seq=6, dim=16, heads=4, kv_heads=2, causal=True))
    mhsa, _ = _block(Config(batch=2, seq=6, dim=16, heads=4, causal=True))
    state = gqa.state_dict()
    for name in ("k_proj", "v_proj"):  # (G·hs, d) -> each k/v head repeated for h/G heads
        for p in ("weight", "bias"):
            w = state[f"{name}.{p}"].view(2, 4, *state[f"{name}.{p}"].shape[1:])
            state[f"{name}.{p}"] = w.repeat_interleave(2, dim=0).reshape(16, *w.shape[2:])
    mhsa.load_state_dict(state)
    torch.testing.assert_close(gqa(x), mhsa(x))
    same, _ = _block(Config(batch=2, seq=6, dim=16, heads=4, kv_heads=4, causal=True))
    same.load_state_dict(mhsa.state_dict())  # G = h is MHSA itself
    torch.testing.assert_close(same(x), mhsa(x))


def test_alibi_adds_minus_slope_times_distance_per_head():
    block, x = _block(Config(batch=1, seq=5, dim=8, heads=2, alibi=True))
    q, k, v = (block.split_heads(p(x)) for p in (block.q_proj, block.k_proj, block.v_proj))
    i = torch.arange(5.0)
    expected = []
    for head, slope in enumerate((2.0**-4, 2.0**-8)):  # 2^(−8k/h), k = 1, 2, h = 2
        scores = q[0, head] @ k[0, head].T / 2 - slope * (i[None] - i[:, None]).abs()
        expected.append(torch.softmax(scores, -1) @ v[0, head])
    heads = torch.stack(expected).transpose(0, 1).reshape(1, 5, 8)
    torch.testing.assert_close(block(x), block.out_proj(heads))


def test_variant_numbers_in_the_output():
    from complexo.analyses.mhsa import analyse

    q = {x.name: x for x in analyse(Config(seq=256, dim=64, heads=4, window=32)).quantities}
    # kept pairs: n·W − W(W−1)/2 = 256·32 − 496 = 7696; scores and A·V 4·B·d per pair
    assert q["useful_score_flops"].value == 4 * 64 * 7696
    gqa = {x.name: x for x in analyse(Config(seq=256, dim=64, heads=4, kv_heads=1)).quantities}
    assert gqa["kv_bytes"].value == gqa["kv_bytes"].measured["torch"] == 2 * 256 * 16 * 4
    flash = analyse(Config(seq=4096, dim=1024, heads=16, impl="flash"))
    naive = analyse(Config(seq=4096, dim=1024, heads=16))
    hbm = [r.quantity("attention_hbm_bytes").value for r in (flash, naive)]
    # fp32, hs = 64, M = 192 KiB: B_c = ⌈196608 / (4·64·4)⌉ = 192 keys, T_c = ⌈4096/192⌉ = 22;
    # per head 4·4096·64·(1 + 2 + 3·22) + 4·4096·(2 + 4·22) bytes, × 16 heads
    assert hbm[0] == 16 * (4 * 4096 * 64 * 69 + 4 * 4096 * 90) == 1_181_220_864
    # standard: per head 4·(4·n·hs + 4·n²) bytes, × 16 heads: 3.7× more
    assert hbm[1] == 16 * 4 * (4 * 4096 * 64 + 4 * 4096**2) == 4_362_076_160
    assert (
        flash.quantity("forward_matmul_flops").value == naive.quantity("forward_matmul_flops").value
    )


@given(
    batch=st.integers(1, 2),
    seq=st.integers(1, 40),
    head=st.sampled_from([2, 4, 8]),
    heads=st.sampled_from([1, 2, 4]),
    group=st.sampled_from([1, 2]),
    variant=st.sampled_from(
        ["plain", "causal", "window", "alibi", "alibi causal", "sdpa", "rope", "rope sdpa"]
    ),
    dtype=st.sampled_from(["fp32", "bf16"]),
)
def test_forward_peak_is_what_the_block_allocates_on_cpu(
    batch, seq, head, heads, group, variant, dtype
):
    """The forward's high-water mark, from the profiler's record of every CPU allocation and
    free, equals the stage-by-stage formula; to the byte but for Python scalar operands, each
    a 0-dim fp64 CPU tensor (the 1/√hs of the naive scale), which device memory never holds."""
    from complexo.measure import cpu_peak_bytes

    cfg = Config(
        batch=batch,
        seq=seq,
        dim=head * heads,
        heads=heads,
        kv_heads=heads // group if group > 1 and heads % group == 0 else None,
        causal="causal" in variant,
        window=max(seq // 2, 1) if variant == "window" else None,
        alibi="alibi" in variant,
        impl="sdpa" if "sdpa" in variant else "naive",
        pos="rope" if "rope" in variant else "none",
        dtype=dtype,
    )
    block, inputs = build(cfg, device="cpu")
    inputs = [t.detach() for t in inputs]

    def forward():
        with torch.no_grad():
            block(*inputs)

    forward()  # the first call may build caches the next one reuses
    measured = cpu_peak_bytes(forward)
    scalars = 0 if cfg.fused else 8
    assert forward_peak(cfg) <= measured <= forward_peak(cfg) + scalars, cfg
