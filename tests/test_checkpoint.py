"""Activation checkpointing of a ViT's training step (``complexo vit --checkpoint``): the reference
run for real with torch.utils.checkpoint, its ledger (complexo/analyses/vit_peak.py) against
MemTracker under FakeTensorMode and the CPU profiler's record, the rerun's FLOPs against
FlopCounterMode, the bytes per block against Korthikanti et al.'s, and the budget's batches.
Every expected number is derived by hand above it; conventions: bytes of tensor storages, FLOP =
2·MAC (matrix products), the step ``out = f(x); out.sum().backward(); sgd.step()``."""

from __future__ import annotations

import pytest
import sympy
import torch

from complexo.analyses import vit, vit_ckpt, vit_peak
from complexo.checkpointing import RNG_STATE
from complexo.counting import unchecked
from complexo.errors import ComplexoError
from complexo.peak import cpu_step_peak, peak
from complexo.symbols import B, M_dev, d, e, f, h, n

MODES = ("none", "full", "selective")


def _peak(cfg):
    return peak(vit_peak.ledger(cfg).moments, cfg.values)


def test_checkpointing_changes_no_gradient():
    """Nothing random in the block (no dropout): the rerun gives the same numbers, so every
    parameter's gradient is the same in the three modes (ViT-Ti/16 at 32: n = 5 tokens)."""
    from complexo.blocks.vit import ViT
    from complexo.presets import VITS

    x = torch.randn(2, 3, 32, 32)
    grads = {}
    for mode in MODES:
        torch.manual_seed(0)
        model = ViT(VITS["vit-ti16"], 32, checkpoint=mode)
        model(x).sum().backward()
        grads[mode] = [p.grad for p in model.parameters()]
    for mode in ("full", "selective"):
        for a, b in zip(grads["none"], grads[mode], strict=True):
            torch.testing.assert_close(a, b)


CASES = [
    ("vit-s32", 64, 2, "fp32"),  # weights dominate: the step peaks at its very end
    ("vit-s32", 64, 2, "bf16"),
    ("vit-ti16", 224, 1, "fp32"),
    ("vit-s16", 224, 2, "bf16"),
    ("vit-b16", 224, 4, "fp32"),
    ("vit-b16", 384, 8, "bf16"),
    ("vit-l16", 224, 2, "bf16"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_each_mode_peaks_where_memtracker_says(case, mode):
    """MemTracker runs the real torch.utils.checkpoint (its rerun in the backward included)
    under fake tensors: every phase's high-water mark is the ledger's, to the byte."""
    model, res, batch, dtype = case
    cfg = vit.Config(model=model, res=res, batch=batch, dtype=dtype, checkpoint=mode)
    best, tracked = _peak(cfg), vit_peak.tracked(cfg)
    assert (best.bytes, best.phase) == (tracked.bytes, tracked.phase)
    assert best.phase_peaks() == tracked.phase_peaks()


def test_full_checkpointing_peaks_in_the_last_blocks_rerun_at_vit_ti16_batch_16():
    """ViT-Ti/16 at 224, B=16, fp32: n = 197, d = 192, f = 768, h = 3, 12 blocks.
    X = 16·197·192·4 = 2,420,736, F = 16·197·768·4 = 9,682,944, a LayerNorm's statistics
    2·4·16·197 = 25,216, SDPA's log-sum-exp 4·16·3·197 = 37,824. At block 12's GELU backward,
    after its rerun: weights 5,717,416·4 = 22,869,664 + image 16·3·224²·4 = 9,633,792 + the
    twelve block inputs 12·X = 29,048,832 + logits 16·1000·4 = 64,000 + the loss and its seed
    8 + the head's dW, db (1000·192 + 1000)·4 = 772,000 + the final norm's dγ, dβ 1,536 + the
    residual's gradient X + the rerun's saved ln1, q, k, v, y, r, ln2 7·X = 16,945,152 and two
    statistics 50,432 and the log-sum-exp 37,824 + fc1's output, fc2's dX and GELU's dX 3·F
    = 29,048,832 (GELU's output went once unpacked) + fc2's dW, db (768·192 + 192)·4 =
    590,592: 111,483,400 against none's 511,875,656 (4.6×). The CPU's real step holds
    12·5,056 bytes more: the RNG state each checkpoint keeps to replay randomness
    (torch.get_rng_state(), made outside any op MemTracker sees)."""
    cfg = vit.Config(model="vit-ti16", res=224, batch=16, checkpoint="full")
    best = _peak(cfg)
    assert (best.bytes, best.phase, best.what) == (
        111_483_400,
        "backward",
        "block 12: GELU's backward",
    )
    assert vit_peak.tracked(cfg).bytes == 111_483_400
    assert _peak(vit.Config(model="vit-ti16", res=224, batch=16)).bytes == 511_875_656
    torch.manual_seed(0)
    net, x = vit.build(cfg, "cpu")
    assert cpu_step_peak(net, (x,)) - best.bytes == 12 * RNG_STATE


def test_selective_checkpointing_spares_only_the_log_sum_exp():
    """ViT-Ti/16 at 224, B=4: the fused kernel keeps no n×n matrix, so the core's rerun spares
    SDPA's fp32 log-sum-exp alone, 4·B·h·n = 4·4·3·197 = 9,456 bytes per block: the forward's
    end holds 12·9,456 = 113,472 less than none's, and so does the peak, in block 12's MLP
    backward, before the core's rerun makes block 12's again for SDPA's backward. The CPU
    holds 12·5,056 more, the checkpoints' RNG states."""
    none = vit.Config(model="vit-ti16", res=224, batch=4)
    cfg = vit.Config(model="vit-ti16", res=224, batch=4, checkpoint="selective")
    a, b = _peak(none), _peak(cfg)
    assert a.phase_peaks()["forward"] - b.phase_peaks()["forward"] == 12 * 9_456
    assert a.bytes - b.bytes == 12 * 9_456
    assert a.what == b.what == "block 12: fc2's backward: dW, db"
    torch.manual_seed(0)
    net, x = vit.build(cfg, "cpu")
    assert cpu_step_peak(net, (x,)) - b.bytes == 12 * RNG_STATE


def test_flopcountermode_counts_the_rerun():
    """ViT-Ti/16 at 224, B=2 (n = 197): per block q, k, v, out 8·2·197·192² = 116,195,328,
    fc1 2·2·197·192·768 = 116,195,328 (fc2's product is not run again: the rerun stops once
    GELU's output, fc2's saved input, is made), Q·Kᵀ and A·V 4·2·197²·192 = 59,610,624.
    Twelve blocks: full adds 12·(116,195,328 + 116,195,328 + 59,610,624) = 3,504,015,360
    executed FLOPs to the backward, selective 12·59,610,624 = 715,327,488; the forward's
    (useful) FLOPs do not change. FlopCounterMode agrees with each formula exactly."""
    results = {m: vit.analyse(vit.Config(model="vit-ti16", batch=2, checkpoint=m)) for m in MODES}
    bwd = {m: r.quantity("backward_flops") for m, r in results.items()}
    fwd = {m: r.quantity("forward_flops").value for m, r in results.items()}
    for q in bwd.values():
        assert q.measured["torch"] == q.value
    assert bwd["full"].value - bwd["none"].value == 3_504_015_360
    assert bwd["selective"].value - bwd["none"].value == 715_327_488
    assert fwd["none"] == fwd["full"] == fwd["selective"]
    # saved tensors (full): the image 2·3·224²·4 = 1,204,224, the twelve block inputs and the
    # final norm's input and output 14·302,592 = 4,236,288, its statistics 2·4·2·197 = 3,152
    saved = results["full"].quantity("activation_bytes")
    assert saved.value == saved.measured["torch"] == 5_443_664
    assert any("checkpoint full: the backward runs" in x for x in results["full"].notes)


def test_bf16_saved_bytes_name_the_cpus_layernorm_statistics():
    """Counted on CPU fake tensors, the LayerNorm keeps μ and 1/σ in bf16; the formula, fp32:
    selective's 25 norms at ViT-Ti/16 224, B=1, differ by 25·2·(4 − 2)·197 = 19,700 bytes,
    the one gap, named."""
    cfg = vit.Config(model="vit-ti16", batch=1, dtype="bf16", checkpoint="selective")
    q = vit.analyse(cfg).quantity("activation_bytes")
    assert q.value - q.measured["torch"] == 19_700
    assert [(g.op, g.terms, g.value) for g in q.gaps] == [
        ("aten.native_layer_norm", ("norm_statistics",), 19_700)
    ]


def test_bytes_per_block_beside_korthikanti():
    """From the ledger (two blocks less one at the forward's end), in 16-bit (e = 2) with
    f = 4d: none 2·B·n·(4·d·e + e·f + 2·e + 2·h) = 32·B·n·d + 8·B·n + 4·B·h·n against their
    34·s·b·h + 5·a·s²·b: 2·s·b·h of dropout masks, the 5·a·s²·b of the softmax, its mask and
    output against SDPA's fp32 log-sum-exp 4·a·s·b, and the norms' statistics 8·s·b. Selective
    drops the 4·B·h·n; full keeps the block's input, B·n·d·e = 2·s·b·h, theirs exactly."""
    half = {e: 2, f: 4 * d}
    ours = {
        m: sympy.expand(vit_ckpt.in_tokens(vit_ckpt.per_layer(vit.Config(checkpoint=m))))
        for m in MODES
    }
    assert sympy.expand(ours["none"] - 2 * B * n * (4 * d * e + e * f + 2 * e + 2 * h)) == 0
    assert sympy.expand(ours["none"].subs(half)) == 32 * B * n * d + 8 * B * n + 4 * B * h * n
    assert sympy.expand(ours["none"] - ours["selective"]) == 4 * B * h * n
    assert ours["full"] == B * n * d * e
    assert (
        sympy.expand(ours["full"].subs(half) - vit_ckpt.in_tokens(vit_ckpt.korthikanti("full")))
        == 0
    )


def test_a_16_gib_budget_fits_ten_times_the_batch_with_full_checkpointing():
    """ViT-B/16 at 224, fp32, 16 GiB = 17,179,869,184 bytes. Every moment of the ledger is
    linear in B; the binding one, block 12's fc2 backward (none) or block 1's GELU backward
    (full), reaches the budget at B = 140.2 and 841.7: none fits B ≤ 140, full B ≤ 841, and
    MemTracker agrees on both sides of each bound. Selective fits 140, as none."""
    budget = 16 * 2**30
    for mode, most in (("none", 140), ("selective", 140), ("full", 841)):
        cfg = vit.Config(model="vit-b16", checkpoint=mode)
        batch, root = vit_ckpt.fits(cfg, budget)
        assert batch == most and int(root.value) == most
        assert root.expr.has(M_dev) and sympy.degree(sympy.numer(root.expr), M_dev) == 1
        if mode != "selective":
            at = vit_peak.tracked(vit.Config(model="vit-b16", batch=most, checkpoint=mode))
            over = vit_peak.tracked(vit.Config(model="vit-b16", batch=most + 1, checkpoint=mode))
            assert at.bytes <= budget < over.bytes
    with unchecked():  # the budget's note and crossovers come from the ledger: no counter runs
        result = vit.analyse(vit.Config(model="vit-b16", batch=4, budget=16))
    assert any("B = 141 to 841 fit only with full checkpointing" in x for x in result.notes)
    assert len(result.summary.crossovers) == 4  # attention's, and one per mode


def test_bad_checkpoint_options_are_one_line():
    with pytest.raises(ComplexoError, match="--checkpoint"):
        vit.Config(checkpoint="some")
    with pytest.raises(ComplexoError, match="--budget must be positive"):
        vit.Config(budget=0)
