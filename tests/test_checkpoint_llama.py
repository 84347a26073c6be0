"""Activation checkpointing of LLaMA-style models (``complexo lora --arch llama --checkpoint``,
``--budget``): the ledger (complexo/analyses/lora_peak_llama.py) against MemTracker running the
real torch.utils.checkpoint under FakeTensorMode and the CPU profiler's record of a real step,
the rerun's FLOPs against FlopCounterMode, the budget's batches; and lora's GPT-2-style model's
activations per block against Korthikanti et al. (complexo/analyses/lora_korthikanti.py).
Every expected number is derived by hand above it; conventions: bytes of tensor storages,
FLOP = 2·MAC (matrix products), the step ``out = f(x); out.sum().backward();
optimizer.step()``, steady (lora_peak's)."""

from __future__ import annotations

import dataclasses

import pytest
import sympy
import torch
from helpers import runner
from test_lora_peak import _agree, _peak  # the ledger's peak, and its agreement with MemTracker

from complexo.analyses import lora, lora_ckpt, lora_korthikanti, lora_peak
from complexo.analyses.lora_measure import build
from complexo.checkpointing import RNG_STATE
from complexo.cli import app
from complexo.counting import unchecked
from complexo.peak import cpu_step_peak
from complexo.symbols import B, d, e, f, h, n

TINY = dict(arch="llama", dim=32, heads=4, vocab=50, ctx=64, mlp=64, rank=2, batch=2, seq=16)
SIDES = ("full", "lora")
MODES = ("none", "full", "selective")


def _forward_end(timeline) -> int:
    return [b for phase, _, b in timeline if phase == "forward"][-1]


CASES = [
    dict(layers=1),
    dict(layers=2, precision="fp32", optimizer="sgd"),
    dict(layers=2, kv_heads=2),  # grouped-query: the core repeats k and v itself
    dict(layers=2, kv_heads=1, precision="fp32", optimizer="adamw"),  # one k, v head
    dict(layers=2, targets=("mlp",)),  # down_proj adapted: the rerun stops inside its adapter
    dict(layers=2, targets=("o",)),  # layer 1's attention needs no gradient at all
    dict(layers=3, targets=("v",), seq=8),  # q and k need none: no rotation to undo
    dict(layers=3, targets=("q", "k", "v", "o", "mlp"), precision="fp32", optimizer="sgd"),
    dict(layers=7, kv_heads=2),  # layers 3 .. 5 lumped
]


@pytest.mark.parametrize("mode", ["full", "selective"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_each_mode_peaks_where_memtracker_says(case, mode):
    """MemTracker runs the real torch.utils.checkpoint (its rerun in the backward included)
    under fake tensors: every phase's high-water mark is the ledger's, on both sides."""
    cfg = lora.Config(**{**TINY, **case}, checkpoint=mode)
    for side in SIDES:
        _agree(cfg, side)


def test_what_the_forward_keeps_in_each_mode():
    """TINY, 2 layers, fp32 (e = 4), SGD: X = B·n·d·e = 2·16·32·4 = 4,096, F = B·n·f·e =
    8,192, a per-token statistic S = B·n·e = 128, SDPA's fp32 log-sum-exp 4·B·h·n = 512, LoRA's
    x·Aᵀ Z = B·n·r·e = 256, the rotary tables cos, sin 2·n·(d/h)·e = 2·16·8·4 = 1,024.

    Full fine-tuning, full: the weights (wte 50·32 + 2 layers of (2·32 + 4·32² + 3·32·64) +
    norm_f 32 + head 50·32 = 23,840 parameters)·4 = 95,360 and ids and targets 2·8·2·16 = 512;
    the checkpoints keep x0 and the tables (4,096 + 1,024), layer 1's output (checkpoint 2's
    input) and layer 2's (the final norm's) 2·X; the final RMSNorm its 1/rms S and x/rms X,
    the head its input X; the log-probs B·n·V·e = 6,400; the loss, its total weight, out.sum()
    and the seed 4·4: 95,872 + 5,120 + 8,192 + 128 + 8,192 + 6,400 + 16 = 123,920.
    None keeps per layer besides its output: norm1's 1/rms S, x/rms X and output X (q, k, v's
    input), q and k rotated and v 3·X, SDPA's output X and log-sum-exp 512, x₁ X, norm2's S,
    x/rms X and output X, gate, SiLU, up and their product 4·F: 10·X + 2·S + 512 + 4·F =
    74,496; none − full = 2·74,496 − 2·X (the inputs full keeps: x0 and layer 1's output,
    kept in none too) = 140,800. Selective: out_proj trains and keeps y, so only the
    log-sum-exp goes: 2·512 = 1,024.
    LoRA (q, v): a middle layer keeps h1 (A's input) X, two Z, q and k rotated and v 3·X, y X,
    the log-sum-exp, x₁ X, norm2's 1/rms S (not h2: gate and up are frozen), gate, SiLU and up
    3·F (not the product: down is frozen): 6·X + 2·Z + 512 + S + 3·F = 50,304; layer 2's
    norm1 keeps its 1/rms S more (its input needs a gradient; layer 1's does not). None keeps
    2·50,304 + 128 + two outputs 2·X, full x0 (which none lets go: layer 1's norm1 keeps
    nothing) and the two outputs: none − full = 100,736 − X = 96,640. Selective: out_proj is
    frozen, so y and the log-sum-exp go: 2·(X + 512) = 9,216."""
    ends = {}
    for mode in MODES:
        cfg = lora.Config(**TINY, layers=2, precision="fp32", optimizer="sgd", checkpoint=mode)
        for side in SIDES:
            best, tracked = _agree(cfg, side)
            assert _forward_end(best.timeline) == _forward_end(tracked.timeline)
            ends[mode, side] = _forward_end(best.timeline)
    assert ends["full", "full"] == 123_920
    assert ends["none", "full"] - ends["full", "full"] == 140_800
    assert ends["none", "full"] - ends["selective", "full"] == 1_024
    assert ends["none", "lora"] - ends["full", "lora"] == 96_640
    assert ends["none", "lora"] - ends["selective", "lora"] == 9_216


@pytest.mark.parametrize("side", SIDES)
def test_checkpointing_changes_no_gradient(side):
    """No dropout: the rerun gives the same numbers, so every trained parameter's gradient is
    the same in the three modes (grouped-query, two layers, fp32, on the CPU)."""
    grads = {}
    for mode in MODES:
        cfg = lora.Config(**TINY, layers=2, kv_heads=2, precision="fp32", checkpoint=mode)
        torch.manual_seed(0)
        module, inputs = build(cfg, side, "cpu")
        module(*inputs).backward()
        grads[mode] = [p.grad for p in module.parameters() if p.requires_grad]
    for mode in ("full", "selective"):
        for a, b in zip(grads["none"], grads[mode], strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mode", ["full", "selective"])
def test_a_12_layer_llama_read_off_its_copies_equals_full_depth(mode):
    """lora_peak.tracked reads a deep model off its 2- and 3-layer copies (complexo.deeper): with
    checkpointing too, that equals MemTracker over all 12 layers, and the ledger, per phase."""
    cfg = lora.Config(**TINY, layers=12, kv_heads=2, checkpoint=mode)
    for side in SIDES:
        best, copies = _agree(cfg, side)
        every = lora_peak.tracked(dataclasses.replace(cfg, full_depth=True), side)
        assert every.phase_peaks() == copies.phase_peaks() == best.phase_peaks()


def test_llama_7b_at_its_context_in_each_mode():
    """LLaMA-7B, n = 2048, B = 1, bf16-mixed AdamW, LoRA r = 8 on q, v: the peak is the loss's
    backward in every mode; full checkpointing lowers it from 22,027,215,366 to
    14,483,501,574 bytes (−34%: the 32 layers' activations beyond their inputs), selective to
    21,481,955,846 (per layer the core's output and log-sum-exp, 2·B·n·d·e + 4·B·h·n =
    16,777,216 + 262,144 = 17,039,360; × 32 = 545,259,520, the difference). Full fine-tuning
    peaks in Adam's step, after the activations are gone: 122,340,107,406 in every mode.
    MemTracker agrees to the byte on each."""
    expected = {"none": 22_027_215_366, "full": 14_483_501_574, "selective": 21_481_955_846}
    assert expected["none"] - expected["selective"] == 32 * (16_777_216 + 262_144)
    for mode in MODES:
        cfg = lora.Config(model="llama-7b", checkpoint=mode)
        best, _ = _agree(cfg, "lora")
        assert (best.bytes, best.what) == (expected[mode], "log_softmax's backward")
        best, _ = _agree(cfg, "full")
        assert (best.bytes, best.phase) == (122_340_107_406, "optimizer")


@pytest.mark.slow  # twelve analyses: about 5 s
def test_flopcountermode_counts_the_llama_rerun():
    """TINY, 2 layers, bf16-mixed (d = 32, f = 64, B = 2, n = 16, r = 2). Full: per layer q,
    k, v, out 2·B·n·d·4·d = 2·2·16·32·128 = 262,144, Q·Kᵀ and A·V 4·B·n²·d = 4·2·256·32 =
    65,536, gate and up 2·2·B·n·d·f = 262,144 (down_proj's product is not run again):
    589,824 per layer, 1,179,648 for two; LoRA on q, v adds 2·2·B·n·r·2·d = 16,384 per
    layer: 1,212,416. Selective: SDPA's two products, 2·65,536 = 131,072.
    Grouped-query (G = 2: k, v 16 wide), LoRA on q, v and the MLP: q, out 2·2·B·n·d² =
    131,072, k, v 2·2·B·n·d·16 = 65,536, SDPA 65,536, gate and up 262,144 = 524,288 per
    layer (full fine-tuning: 1,048,576); LoRA adds down_proj's base product (its adapter's A
    saves its input; the rerun stops before B) 2·B·n·f·d = 131,072, and the adapters: q
    2·B·n·r·2·d = 8,192, v 2·B·n·r·(d + 16) = 6,144, gate and up 2·2·B·n·r·(d + f) = 24,576,
    down's A 2·B·n·r·f = 8,192: 702,464 per layer, 1,404,928. FlopCounterMode (CPU fake
    tensors) agrees with each formula; the forward does not change."""
    extra = {
        (): {("full", "full"): 1_179_648, ("full", "lora"): 1_212_416},
        (("kv_heads", 2), ("targets", ("q", "v", "mlp"))): {
            ("full", "full"): 1_048_576,
            ("full", "lora"): 1_404_928,
        },
    }
    for case, flops in extra.items():
        flops |= {("selective", side): 131_072 for side in SIDES}
        results = {
            m: lora.analyse(lora.Config(**TINY, layers=2, **dict(case), checkpoint=m))
            for m in MODES
        }
        for (mode, side), want in flops.items():
            q, base = (results[m].sides[side].quantity("backward_flops") for m in (mode, "none"))
            assert q.measured["torch"] == q.value
            assert q.value - base.value == want, (case, mode, side)
            fwd = {results[m].sides[side].quantity("forward_flops").value for m in (mode, "none")}
            assert len(fwd) == 1
        # saved bytes, full: the rotary tables (2·n·(d/h)·e = 2·16·8·2 = 512) are the
        # checkpoints' arguments, saved by no op: that gap, named, and no other
        saved = results["full"].sides["lora"].quantity("activation_bytes")
        assert [(g.op, g.value) for g in saved.gaps] == [("torch.utils.checkpoint", 512)]
        assert any("but down_proj's last product" in x for x in results["full"].notes)


def _cpu(cfg, side) -> int:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        module, inputs = build(cfg, side, "cpu")
        return cpu_step_peak(module, inputs, cfg.optimizer, master_fp32=cfg.master_fp32)
    finally:
        torch.set_num_threads(threads)


def test_the_cpu_run_holds_the_checkpoints_rng_states():
    """Real steps (TINY, 2 layers, fp32, SGD, one thread) against the ledger's peak. Each
    checkpoint keeps the CPU generator's state, 5,056 bytes, made outside any op MemTracker
    sees, until its backward has run. Full fine-tuning, full: the peak is layer 1's backward
    (layer 2's state gone): + 5,056; selective: layer 2's backward, both states: + 2·5,056.
    LoRA peaks in layer 2's backward in both modes: + 2·5,056 and the 4·8 bytes of its four
    α/r scalars (0-dim fp64 tensors that mul saves), as without checkpoints."""
    gaps = {("none", "full"): 0, ("none", "lora"): 4 * 8}
    gaps |= {("full", "full"): RNG_STATE, ("full", "lora"): 2 * RNG_STATE + 4 * 8}
    gaps |= {("selective", "full"): 2 * RNG_STATE, ("selective", "lora"): 2 * RNG_STATE + 32}
    for (mode, side), gap in gaps.items():
        cfg = lora.Config(**TINY, layers=2, precision="fp32", optimizer="sgd", checkpoint=mode)
        assert _cpu(cfg, side) - _peak(cfg, side).bytes == gap, (mode, side)


def test_a_bf16_cpu_run_within_5_percent():
    """bf16-mixed AdamW, LoRA, B = 4, n = 64, 2 layers: without checkpoints the CPU holds
    5,152 bytes more than the ledger (its bf16 matrix products' scratch, inside the op,
    test_lora_peak_llama); with either checkpoint, that and the two checkpoints' RNG states,
    2·5,056, exactly; under 5% of the ledger's peak in each mode (none of it grows with the
    batch)."""
    cfg = lora.Config(**{**TINY, "batch": 4, "seq": 64}, layers=2)
    gap = {m: _cpu(dataclasses.replace(cfg, checkpoint=m), "lora") for m in MODES}
    peaks = {m: _peak(dataclasses.replace(cfg, checkpoint=m), "lora").bytes for m in MODES}
    assert gap["none"] - peaks["none"] == 5_152
    for mode in ("full", "selective"):
        assert gap[mode] - peaks[mode] == 5_152 + 2 * RNG_STATE
        assert gap[mode] - peaks[mode] < 0.05 * peaks[mode]


def test_a_24_gib_budget_fits_llama_7b_lora_at_b_12_with_full_checkpointing():
    """LLaMA-7B, n = 2048, bf16-mixed AdamW, 24 GiB = 25,769,803,776 bytes: LoRA fits B = 1
    without checkpoints or with selective, 12 with full; MemTracker agrees on both sides of
    full's bound. Full fine-tuning fits none: its weights, gradients, fp32 masters and Adam's
    moments alone, (2 + 2 + 4 + 8)·6.74e9 ≈ 108 GB, are over the budget at any batch."""
    budget = 24 * 2**30
    for mode, most in (("none", 1), ("selective", 1), ("full", 12)):
        cfg = lora.Config(model="llama-7b", checkpoint=mode)
        batch, root = lora_ckpt.fits(cfg, "lora", budget)
        assert batch == most and int(root.value) == most
        assert lora_ckpt.fits(cfg, "full", budget) == (0, None)
    at = lora_peak.tracked(lora.Config(model="llama-7b", batch=12, checkpoint="full"), "lora")
    over = lora_peak.tracked(lora.Config(model="llama-7b", batch=13, checkpoint="full"), "lora")
    assert at.bytes <= budget < over.bytes
    with unchecked():  # the budget's note comes from the ledger: no counter runs
        result = lora.analyse(lora.Config(model="llama-7b", budget=24))
    assert any("lora: a 24 GiB budget" in x and "B = 2 to 12 fit only" in x for x in result.notes)


def test_lora_takes_checkpoint_for_a_llama():
    result = runner.invoke(
        app,
        ["lora", "--arch", "llama", "--layers", "1", "--dim", "8", "--heads", "2",
         "--checkpoint", "selective"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "checkpoint selective: the backward runs the attention core" in result.output


# --- lora's GPT-2-style model against Korthikanti et al. ---------------------------------------


def test_per_block_activations_against_korthikanti():
    """Full fine-tuning of GPT-2 (f = 4·d), read off the ledger (three blocks less two), in
    16-bit (e = 2). None: per block x, norm1's output, q, k, v, SDPA's output, x₁, norm2's
    output 8·B·n·d·e, fc_in's and GELU's outputs 2·B·n·f·e, the two LayerNorms' statistics
    2·2·B·n·e, the log-sum-exp 4·B·h·n: at f = 4·d, e = 2 that is 32·s·b·h + 8·s·b + 4·a·s·b,
    theirs 34·s·b·h + 5·a·s²·b less the two dropout masks 2·s·b·h and the n×n matrices
    5·a·s²·b, plus the statistics and the log-sum-exp. Selective: the log-sum-exp goes (ours
    32·s·b·h + 8·s·b against their 34·s·b·h). Full: the block's input, B·n·d·e = 2·s·b·h, as
    theirs. LoRA (q, v) keeps, per block, h2 and GELU's output less (fc_in, fc_out frozen:
    B·n·d·e + B·n·f·e) and its two adapters' x·Aᵀ more, 2·B·n·r·e."""
    from complexo.symbols import r

    cfg = {m: lora.Config(model="gpt2", checkpoint=m) for m in MODES}
    ours = {m: lora_korthikanti.per_layer(cfg[m], "full").subs({f: 4 * d, e: 2}) for m in MODES}
    theirs = {m: lora_korthikanti.korthikanti(m) for m in MODES}
    masks, matrices = 2 * n * B * d, 5 * h * n**2 * B
    stats, lse = 8 * n * B, 4 * h * n * B
    assert sympy.expand(ours["none"] - (theirs["none"] - masks - matrices + stats + lse)) == 0
    assert sympy.expand(ours["selective"] - (theirs["selective"] - masks + stats)) == 0
    assert sympy.expand(ours["full"] - theirs["full"]) == 0
    lora_none = lora_korthikanti.per_layer(cfg["none"], "lora")
    full_none = lora_korthikanti.per_layer(cfg["none"], "full")
    less = B * n * d * e + B * n * f * e - 2 * B * n * r * e
    assert sympy.expand(full_none - lora_none - less) == 0
    note = lora_korthikanti.note(cfg["selective"], "full")
    assert "Korthikanti et al.'s 34·B·d·n = 25.5 MiB" in note and "n×n" in note
    assert lora_korthikanti.note(lora.Config(model="llama-7b", checkpoint="full"), "lora") == ""
