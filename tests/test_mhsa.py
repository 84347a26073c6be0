"""MHSA formulas against counts the formulas did not produce: FlopCounterMode, fvcore,
autograd's saved tensors and the modules' own parameters; and the reference blocks against
nn.MultiheadAttention numerically."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from complexo.analyses.mhsa import Config, build, cost_model
from complexo.cost import Kind, evaluate
from complexo.measure import count_fvcore, cpu_attention_formulas, measure_torch, param_counts

configs = st.tuples(
    st.integers(1, 3),  # B
    st.integers(1, 48),  # n
    st.integers(1, 8),  # head size
    st.integers(1, 4),  # h
    st.sampled_from(["fp32", "fp16", "bf16"]),
    st.sampled_from(["naive", "sdpa"]),
    st.booleans(),  # causal
    st.booleans(),  # bias
).map(
    lambda t: Config(
        batch=t[0],
        seq=t[1],
        dim=t[2] * t[3],
        heads=t[3],
        dtype=t[4],
        impl=t[5],
        causal=t[6],
        bias=t[7],
    )
)


def formula(cfg: Config, kind: Kind, matmul_only: bool = False) -> int:
    model = cost_model(cfg.impl, cfg.causal, cfg.bias)
    return evaluate(model.total(kind, matmul_only=matmul_only), cfg.values)


@given(configs)
def test_matmul_flops_equal_flopcountermode(cfg):
    block, x = build(cfg)
    # On SDPA's math path (the meta device's own dispatch) FlopCounterMode sees every matmul.
    run = measure_torch(lambda: block(x), list(block.parameters()), attention="math")
    assert run.forward.total == formula(cfg, Kind.FORWARD, matmul_only=True)
    # Backward: the math path stores P, the fused kernel recomputes Q·Kᵀ (2·B·n²·d more).
    recompute = 0 if cfg.impl == "naive" else 2 * cfg.batch * cfg.seq**2 * cfg.dim
    assert run.backward.total == formula(cfg, Kind.BACKWARD, matmul_only=True) - recompute


@given(configs)
def test_fused_kernel_flops_equal_torch_own_sdpa_formulas(cfg):
    block, x = build(cfg)
    run = measure_torch(
        lambda: block(x), list(block.parameters()), custom_mapping=cpu_attention_formulas()
    )
    assert run.forward.total == formula(cfg, Kind.FORWARD, matmul_only=True)
    assert run.backward.total == formula(cfg, Kind.BACKWARD, matmul_only=True)


@given(configs)
def test_matmul_flops_equal_fvcore_where_it_counts(cfg):
    block, x = build(cfg)
    fv = count_fvcore(block, (x.detach(),))
    expected = formula(cfg, Kind.FORWARD, matmul_only=True)
    if cfg.impl == "sdpa":
        # fvcore skips aten::scaled_dot_product_attention: Q·Kᵀ and A·V, 2·2·B·n²·d
        assert "aten::scaled_dot_product_attention" in fv.uncounted_ops
        expected -= 4 * cfg.batch * cfg.seq**2 * cfg.dim
    else:
        assert {"aten::softmax", "aten::mul"} <= fv.uncounted_ops
    assert fv.total == expected


@given(configs)
def test_activation_bytes_equal_saved_tensors(cfg):
    block, x = build(cfg)
    run = measure_torch(lambda: block(x), list(block.parameters()))
    assert run.saved_bytes == formula(cfg, Kind.ACTIVATION)


@given(configs)
def test_params_equal_module_and_fvcore_counts(cfg):
    block, _ = build(cfg)
    expected = formula(cfg, Kind.PARAMS)
    assert param_counts(block) == {"torch": expected, "fvcore": expected}
    mha = torch.nn.MultiheadAttention(cfg.dim, cfg.heads, bias=cfg.bias, device="meta")
    assert sum(p.numel() for p in mha.parameters()) == expected


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
        block, x = build(cfg, device=device)
        run = measure_torch(lambda: block(x), list(block.parameters()))  # noqa: B023
        shapes = sorted((s, dt) for s, dt, _ in run.saved)
        if device == "meta":
            meta_shapes, meta_bytes = shapes, run.saved_bytes
    assert shapes == meta_shapes and run.saved_bytes == meta_bytes


def test_flopcountermode_misses_sdpa_on_real_cpu():
    """The blind spot the output reports exists on real CPU tensors, not only on meta."""
    cfg = Config(batch=1, seq=16, dim=16, heads=2, impl="sdpa")
    block, x = build(cfg, device="cpu")
    run = measure_torch(lambda: block(x), list(block.parameters()), attention="math")
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in run.forward.uncounted_ops
    # only the four projections: 4 · 2·B·n·d²
    assert run.forward.total == 4 * 2 * 1 * 16 * 16**2


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_reference_blocks_match_nn_multiheadattention(causal, bias):
    torch.manual_seed(0)
    cfg = Config(batch=2, seq=7, dim=12, heads=3, causal=causal, bias=bias)
    naive, x = build(Config(**{**cfg.__dict__, "impl": "naive"}), device="cpu")
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
