"""Positional encodings (``complexo mhsa --pos``): hand-derived parameters, FLOPs, tables and saved
bytes against counts the formulas did not produce (the modules' own parameters and buffers,
autograd's saved tensors, an element-wise op counter), the encodings' defining properties, and the
command line's spellings."""

import math

import pytest
import torch
from helpers import assert_one_line_error, runner
from torch.utils._python_dispatch import TorchDispatchMode

from complexo.analyses.mhsa import Config, build
from complexo.cli import app
from complexo.cost import Kind, evaluate
from complexo.measure import measure_torch


def formula(cfg: Config, kind: Kind, name: str) -> int:
    return evaluate(cfg.model().term(kind, name).expr, cfg.values)


def total(cfg: Config, kind: Kind) -> int:
    return evaluate(cfg.model().total(kind), cfg.values)


class ElementwiseCounter(TorchDispatchMode):
    """One FLOP per output element of every add, sub and mul: what FlopCounterMode leaves out."""

    OPS = frozenset({"add", "sub", "mul"})

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket.__name__ in self.OPS:
            self.flops += out.numel()
        return out


def test_learned_table_is_n_max_times_d_parameters():
    cfg = Config(batch=2, seq=16, dim=32, heads=4, pos="learned", max_seq=64)
    block, _ = build(cfg)
    # P·d = 64·32 = 2048, beside 4·d² + 4·d = 4·1024 + 128 = 4224 of the projections
    assert formula(cfg, Kind.PARAMS, "positions") == 2048
    assert sum(p.numel() for p in block.parameters()) == 4224 + 2048
    assert block.positions.table.shape == (64, 32)


def test_sinusoidal_and_rope_tables_are_buffers_not_parameters():
    sin = Config(batch=2, seq=16, dim=32, heads=4, pos="sinusoidal", max_seq=64)
    rope = Config(batch=2, seq=16, dim=32, heads=4, pos="rope", max_seq=64)
    for cfg in (sin, rope):
        block, _ = build(cfg)
        assert sum(p.numel() for p in block.parameters()) == 4224  # 4·d² + 4·d
        assert total(cfg, Kind.PARAMS) == 4224
    # sinusoidal: a (P, d) fp32 buffer, 64·32·4 = 8192 bytes
    block, _ = build(sin)
    assert sum(b.numel() * b.element_size() for b in block.buffers()) == 8192
    assert formula(sin, Kind.MEMORY, "pos_table") == 8192
    # RoPE: cos and sin, (P, hs/2) = (64, 4) each: 2·64·4·4 = 2048 bytes = P·hs·e = 64·8·4
    block, _ = build(rope)
    assert sum(b.numel() * b.element_size() for b in block.buffers()) == 2048
    assert formula(rope, Kind.MEMORY, "pos_table") == 2048


def test_rope_rotation_is_six_flops_per_pair_on_q_and_grouped_k():
    cfg = Config(batch=2, seq=16, dim=32, heads=4, kv_heads=2, pos="rope")
    # q: B·n·d = 2·16·32 = 1024 elements, 512 pairs × 6 = 3072; k on G = 2 heads of hs = 8:
    # B·n·G·hs = 2·16·16 = 512 elements, 256 pairs × 6 = 1536
    assert formula(cfg, Kind.FORWARD, "rope_q") == 3072
    assert formula(cfg, Kind.FORWARD, "rope_k") == 1536
    # backward: the transposed rotation, 3 per element, and the add that joins the gradients of
    # the two halves into q's, 1 per element: 4·1024 = 4096 on q, 4·512 = 2048 on k (what the
    # symbolic trace of the block counts: tests/test_proofs.py, variant "naive pos rope")
    assert formula(cfg, Kind.BACKWARD, "rope_q") == 4096
    assert formula(cfg, Kind.BACKWARD, "rope_k") == 2048
    block, _ = build(cfg)
    counter = ElementwiseCounter()
    with counter:  # the module's own ops, on meta tensors: 4 mul, 1 sub, 1 add per pair
        block.rope(torch.empty(2, 16, 4, 8, device="meta"))  # (B, n, heads, hs)
        block.rope(torch.empty(2, 16, 2, 8, device="meta"))
    assert counter.flops == 3072 + 1536
    # and no other forward term moved: the block without RoPE differs by exactly these
    plain = Config(batch=2, seq=16, dim=32, heads=4, kv_heads=2)
    assert total(cfg, Kind.FORWARD) - total(plain, Kind.FORWARD) == 4608


def test_added_encodings_are_one_add_per_element():
    cfg = Config(batch=2, seq=16, dim=32, heads=4, pos="learned")
    # B·n·d = 2·16·32 = 1024 adds; the table's gradient Σ over the batch: 1024 more
    assert formula(cfg, Kind.FORWARD, "pos_add") == 1024
    assert formula(cfg, Kind.BACKWARD, "pos_grad") == 1024
    block, (x,) = build(cfg)
    counter = ElementwiseCounter()
    with counter:
        block.positions(x.detach())
    assert counter.flops == 1024
    sinusoidal = Config(batch=2, seq=16, dim=32, heads=4, pos="sinusoidal")
    assert "pos_grad" not in {t.name for t in sinusoidal.model().terms(Kind.BACKWARD)}


@pytest.mark.parametrize("impl", ["naive", "sdpa"])
def test_rope_saves_only_its_buffers_beside_what_mhsa_saves(impl):
    """Autograd's saved tensors on meta: RoPE's multiplies keep cos and sin (views of the
    buffers: their whole storage), which are held anyway, as weights are, so no activation;
    the rotated q and k replace q and k byte for byte."""
    plain = Config(batch=2, seq=16, dim=32, heads=4, impl=impl)
    cfg = Config(batch=2, seq=16, dim=32, heads=4, impl=impl, pos="rope", max_seq=32)
    saved, with_buffers = {}, {}
    for c in (plain, cfg):
        block, inputs = build(c)
        params = list(block.parameters())
        run = measure_torch(lambda b=block, i=inputs: b(*i), [*params, *block.buffers()])
        saved[c.pos] = run.saved_bytes
        run = measure_torch(lambda b=block, i=inputs: b(*i), params)
        with_buffers[c.pos] = run.saved_bytes
    assert saved["rope"] == saved["none"] == total(cfg, Kind.ACTIVATION)
    # what the buffers are: cos and sin, 2·P·(hs/2)·e = 2·32·4·4 = 1024 bytes
    assert with_buffers["rope"] - with_buffers["none"] == 1024
    assert formula(cfg, Kind.MEMORY, "pos_table") == 1024


def test_rope_scores_depend_only_on_the_distance():
    """Rotating q at position i and k at position j leaves q·k a function of i − j."""
    cfg = Config(batch=1, seq=12, dim=8, heads=1, pos="rope")
    block, _ = build(cfg, device="cpu")
    torch.manual_seed(0)
    q, k = torch.randn(8), torch.randn(8)
    rotated_q = block.rope(q.expand(1, 12, 1, 8))[0, :, 0]  # the same q at every position
    rotated_k = block.rope(k.expand(1, 12, 1, 8))[0, :, 0]
    scores = rotated_q @ rotated_k.T  # (12, 12): position i against position j
    for shift in range(1, 5):
        assert torch.allclose(scores[shift, 0], scores[shift + 6, 6], atol=1e-5)
    assert torch.allclose(scores.diagonal(), (q @ k).expand(12), atol=1e-5)  # i = j: no turn


def test_sinusoidal_table_is_sin_and_cos_of_position_times_frequency():
    cfg = Config(batch=1, seq=4, dim=4, heads=1, pos="sinusoidal")
    block, _ = build(cfg, device="cpu")
    table = block.positions.table
    # θ_0 = 1, θ_1 = 10000^(−2/4) = 0.01: row 3 is sin 3, cos 3, sin 0.03, cos 0.03
    expected = [math.sin(3), math.cos(3), math.sin(0.03), math.cos(0.03)]
    assert torch.allclose(table[3], torch.tensor(expected), atol=1e-6)


def test_alibi_keeps_its_old_spelling():
    old = Config(batch=1, seq=8, dim=8, heads=2, alibi=True)
    new = Config(batch=1, seq=8, dim=8, heads=2, pos="alibi")
    assert (old.pos, new.alibi) == ("alibi", True)
    assert old.model().terms(Kind.FORWARD) == new.model().terms(Kind.FORWARD)
    result = runner.invoke(app, ["mhsa", "--seq", "8", "--dim", "8", "--heads", "2", "--alibi"])
    assert result.exit_code == 0 and "ALiBi" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--alibi", "--pos", "rope"], "--alibi is --pos alibi: it cannot go with --pos rope"),
        (["--pos", "rope", "--heads", "8"], "--pos rope rotates pairs of features: head size 1"),
        (["--pos", "learned", "--max-seq", "4"], "--max-seq 4 is below --seq 8"),
        (["--max-seq", "16"], "--max-seq sizes a position table"),
        (["--pos", "rope", "--kv-seq", "4"], "--pos does not apply to cross-attention"),
    ],
)
def test_bad_position_options_are_one_line(args, message):
    result = runner.invoke(app, ["mhsa", "--seq", "8", "--dim", "8", "--heads", "2", *args])
    assert_one_line_error(result, message)


def test_rope_output_names_its_convention_and_the_counters_gap():
    result = runner.invoke(
        app, ["mhsa", "--seq", "16", "--dim", "32", "--heads", "4", "--pos", "rope"]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "6 FLOPs per pair" in text and "count no element-wise op" in text
    assert "rope_q, rope_k" in text  # the counters' gap on aten.mul names RoPE's terms


@pytest.mark.parametrize(("pos", "mode"), [("rope", "forward"), ("learned", "train")])
def test_profile_times_the_encoding_in_its_own_row(pos, mode):
    """A real CPU run: the encoding's ops inside complexo::positions are its row's time, and
    RoPE's multiplies are not the scale's (told apart by range); the forward's peak is the
    formula's to the byte but for the naive scale's 8-byte Python scalar."""
    from complexo import profile as profiling
    from complexo.analyses.mhsa import ANALYSIS

    cfg = Config(batch=1, seq=16, dim=16, heads=2, pos=pos)
    prof = profiling.run(ANALYSIS, cfg, device="cpu", mode=mode, warmup=0, repeat=1)
    row = prof.by_term["positions"]
    # RoPE: q and k, 1·16·16 elements each, 3 FLOPs per element: 2·768 = 1536;
    # learned: 1·16·16 = 256 adds
    assert row["flops"] == (1536 if pos == "rope" else 256) and row["measured_s"] > 0
    # fewest bytes, fp32: RoPE q, k read and written 2·2·256·4 = 4096, and the 16 rows of cos and
    # sin, 16·8·4 = 512; learned: x read and written 2·256·4 = 2048, table[:n] 256·4 = 1024
    assert row["bytes"] == (4608 if pos == "rope" else 3072)
    assert row["intensity"] < 1  # memory-bound: under one FLOP per byte
    if mode == "forward":
        assert 0 <= prof.memory_peak - prof.memory_predicted <= 8


def test_every_encoding_is_proved_for_all_shapes():
    """learned, sinusoidal and rope: the suite proves each (tests/test_proofs.py) where the
    table holds the n tokens (P ≥ n, the trace's guard), and the result says so."""
    from complexo import analyse

    for pos in ("learned", "sinusoidal", "rope"):
        r = analyse("mhsa", seq=4, dim=4, heads=2, pos=pos)
        assert "P >= n" in r.quantity("backward_flops").proof, pos
