"""The newer blocks' training steps as they really peak (complexo/analyses/*_peak.py for mlp,
conv, video, patch), against what the code did not compute from the formula: torch's
MemTracker under FakeTensorMode (any size, nothing allocated) and the CPU profiler's record of
every allocation and free (a real step at small sizes, one thread). Every expected peak is
derived by hand above it; conventions: fp32 unless said, bytes of tensor storages, the step
``out = f(x); out.sum().backward(); sgd.step()`` with ``out`` held."""

from __future__ import annotations

import pytest
import torch

from complexo.analyses import mlp, mlp_peak
from complexo.peak import cpu_step_peak, peak


def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    return threads


def _cpu(module, inputs) -> int:
    threads = _one_thread()
    try:
        return cpu_step_peak(module, inputs)
    finally:
        torch.set_num_threads(threads)


def _ids(variant: dict) -> str:
    return ",".join(f"{k}={x}" for k, x in variant.items()) or "default"


# --- mlp -------------------------------------------------------------------------------------


def _mlp_peak(cfg, side):
    return peak(mlp_peak.ledger(cfg, side).moments, cfg.values)


def test_gelu_mlp_peaks_at_fc_outs_dx_and_swiglu_at_the_products_backward():
    """B=2, n=16, d=8, f=32, f_g=24, fp32: X = 2·16·8·4 = 1024, H = 2·16·32·4 = 4096, G =
    2·16·24·4 = 3072. GELU: weights 2·8·32·4 = 2048 + x 1024 + h, GELU(h) 2·4096 + the output
    1024 + out.sum() and its seed 8 + fc_out's dW 8·32·4 = 1024 + its dX 4096 = 17416 (the
    forward's high-water mark: 2048 + 1024 + 8192 + 1024 + 8 = 12296). SwiGLU: weights
    3·8·24·4 = 2304 + x 1024 + g, SiLU(g), u 3·3072 (the product freed by down_proj's
    backward) + the output 1024 + 8 + down_proj's dW 768 + its dX and the product's two
    gradients 3·3072 = 23560: six G live at once."""
    cfg = mlp.Config(batch=2, seq=16, dim=8, hidden=32, gated_hidden=24)
    best = _mlp_peak(cfg, "gelu")
    assert (best.bytes, best.phase, best.what) == (17416, "backward", "fc_out's backward: dX")
    assert best.phase_peaks()["forward"] == 12296
    assert mlp_peak.tracked(cfg, "gelu").bytes == 17416
    best = _mlp_peak(cfg, "gated")
    assert (best.bytes, best.what) == (23560, "the product's backward: dy⊙act(g)")
    assert mlp_peak.tracked(cfg, "gated").bytes == 23560
    # the all-live sum: 2·weights + the output + saved (x, and h, GELU(h) or 4 G):
    # GELU 4096 + 1024 + 1024 + 8192 = 14336, 18% under; gated 4608 + 1024 + 1024 + 12288 =
    # 18944, 20% under
    assert (mlp_peak.all_live(cfg, "gelu"), mlp_peak.all_live(cfg, "gated")) == (14336, 18944)


MLP_VARIANTS = [
    dict(),
    dict(bias=True),
    dict(dtype="bf16"),
    dict(gated="geglu", bias=True, dtype="fp16"),
    dict(match_params=True),
    dict(seq=1, dim=64),  # the weights outweigh the tokens: the step peaks in its tail
]


@pytest.mark.parametrize("side", mlp.SIDES)
@pytest.mark.parametrize("variant", MLP_VARIANTS, ids=_ids)
def test_every_mlp_variant_peaks_where_memtracker_says(side, variant):
    """Against MemTracker, every phase's high-water mark, not only the step's."""
    cfg = mlp.Config(**{"batch": 2, "seq": 16, "dim": 8, **variant})
    best, tracked = _mlp_peak(cfg, side), mlp_peak.tracked(cfg, side)
    assert (best.bytes, best.phase) == (tracked.bytes, tracked.phase)
    assert best.phase_peaks() == tracked.phase_peaks()


def test_llama_7b_mlp_step_under_fake_tensors():
    """LLaMA-7B's SwiGLU MLP (d = 4096, f_g = 11008), B=8, n=2048, bf16, which no CPU here
    could hold: weights 3·4096·11008·2 = 270,532,608, X = 8·2048·4096·2 = 134,217,728, G =
    8·2048·11008·2 = 360,710,144; at the product's backward weights + x and the output 2·X +
    g, SiLU(g), u, down_proj's dX and the product's two gradients 6·G + down_proj's dW
    4096·11008·2 = 90,177,536 + 2·2 = 2,793,406,468, and MemTracker agrees to the byte."""
    cfg = mlp.Config(batch=8, seq=2048, dim=4096, gated_hidden=11008, dtype="bf16")
    X, G = 8 * 2048 * 4096 * 2, 8 * 2048 * 11008 * 2
    expected = 3 * 4096 * 11008 * 2 + 2 * X + 6 * G + 4096 * 11008 * 2 + 4
    best = _mlp_peak(cfg, "gated")
    assert best.bytes == expected == 2_793_406_468
    assert mlp_peak.tracked(cfg, "gated").bytes == expected


@pytest.mark.parametrize("bias", [False, True])
def test_mlps_on_the_cpu_add_the_seeds_copy_at_fc_out(bias):
    """Real steps, B=2, n=64, d=32 (f = 128, f_g = 256), one thread. The gated MLP's peak is
    the ledger's to the byte. The GELU MLP's is X = 2·64·32·4 = 16384 bytes more without
    biases: fc_out's backward, where it peaks, multiplies the output's gradient, the loss's
    seed expanded to (B, n, d) (a stride-0 view, which fake tensors never copy), and the
    CPU's mm copies it contiguous for the product. With biases the peak moment is the
    bias's Σ dY, after the copy is freed: X less that db, d·4 = 128: 16256 more."""
    cfg = mlp.Config(batch=2, seq=64, dim=32, bias=bias)
    for side, gap in (("gated", 0), ("gelu", 16384 - 128 * bias)):
        module, x = mlp.build(cfg, side, "cpu")
        assert _cpu(module, (x,)) - _mlp_peak(cfg, side).bytes == gap
