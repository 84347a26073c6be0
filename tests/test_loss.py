"""Losses: hand-derived values (a tiny LM head, GPT-2's logits, CLIP at B = 32768), the
written-out references against F.cross_entropy and the chunked loss's gradients against the
unchunked ones, and every formula against FlopCounterMode, fvcore and autograd's saved tensors."""

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_one_line_error, runner

from complexo.analyses import loss
from complexo.blocks import loss as ref
from complexo.cli import app
from complexo.conventions import XENT_BWD_FLOPS, XENT_FWD_FLOPS
from complexo.cost import Kind, evaluate
from complexo.errors import ComplexoError


def values(r) -> dict[str, int]:
    return {q.name: q.value for q in r.quantities}


def term(r, kind: Kind, name: str) -> int:
    return evaluate(r.model.term(kind, name).expr, r.values)


def test_xent_per_element_costs():
    # max 1 + subtract 1 + exp 1 + sum 1 + log-softmax 1 = 5 forward; Σ, ⊙, + = 3 backward
    assert (XENT_FWD_FLOPS, XENT_BWD_FLOPS) == (5, 3)
    r = loss.analyse(loss.Config(batch=1, seq=1, vocab=7, dim=1))
    # one row of 7 logits: 5·7 element-wise + 3 per row = 38; head 2·1·7 = 14
    v = values(r)
    assert v["forward_flops"] - v["forward_matmul_flops"] == 38
    assert v["forward_matmul_flops"] == 14


def test_tiny_lm_head_bf16_in_three_chunks():
    r = loss.analyse(loss.Config(batch=2, seq=3, vocab=5, dim=4, dtype="bf16", chunks=3))
    # rows B·n = 6, logits N = 6·5 = 30, e = 2
    assert values(r) == {
        # head 2·6·4·5 = 240; 5 per logit 150; 3 per row 18
        "forward_flops": 408,
        "forward_matmul_flops": 240,
        # dx, dW 2·240 = 480; 3 per logit 90; 3 per row 18
        "backward_flops": 588,
        # W: V·d = 20
        "params": 20,
        # x 6·4·2 = 48; exp(z − m) and log p 2·30·4 = 240; s 6·4 = 24; y 6·8 = 48
        "activation_bytes": 360,
        # z 30·2 + its fp32 copy 30·4
        "logits_bytes": 180,
        # dz fp32 30·4 + in bf16 30·2
        "logits_grad_bytes": 180,
        # x 48 + log p 120 + y 48 + total weight 4
        "fused_saved_bytes": 220,
        # 3 matmuls 720; (4 passes + p, ÷ B·n) 6·30 = 180; 4 per row 24; c·V·d = 3·20 = 60
        "chunked_flops": 984,
        # dx 6·4·2 = 48, dW 5·4·2 = 40
        "chunked_saved_bytes": 88,
        # a chunk of 10 logits × (2 + 2 + 3·4) = 160; dx 48; fp32 dW 80
        "chunked_peak_bytes": 288,
        # a training step at log p: W 40, x 48, y 48; z, z − m, exp, log p 4·30·4 = 480;
        # m, s, log s 3·6·4 = 72 (the backward's most: 676)
        "training_peak_bytes": 688,
    }
    for name in ("activation_bytes", "fused_saved_bytes", "chunked_saved_bytes", "params"):
        assert r.quantity(name).measured["torch"] == r.quantity(name).value, name
    # the counters count the matmuls only: 240 forward, 480 backward, 720 chunked
    assert r.quantity("forward_flops").measured == {"fvcore": 240, "torch": 240}
    assert r.quantity("backward_flops").measured["torch"] == 480
    assert r.quantity("chunked_flops").measured["torch"] == 720
    gaps = {g.op: g.value for g in r.quantity("forward_flops").gaps if g.counter == "fvcore"}
    # amax 30, two subtractions 60, exp 30, sum 30, log with the rows 18: 408 − 240 = 168
    assert gaps == {
        "aten::amax": 30,
        "aten::sub": 60,
        "aten::exp": 30,
        "aten::sum": 30,
        "aten::log": 18,
    }
    assert sum(gaps.values()) == 408 - 240
    assert not [g for q in r.quantities for g in q.gaps if g.reason == "unexplained"]


def test_focal_adds_per_token_work_only():
    base = loss.analyse(loss.Config(batch=2, seq=3, vocab=5, dim=4))
    r = loss.analyse(loss.Config(kind="focal", batch=2, seq=3, vocab=5, dim=4))
    extra = {k: values(r)[k] - values(base)[k] for k in ("forward_flops", "backward_flops")}
    # 6 rows: 4 forward (exp, 1 −, pow, ×) and 9 backward per row
    assert extra == {"forward_flops": 24, "backward_flops": 54}
    # log p_t, p_t, 1 − p_t, w: 4 fp32 per row, 4·4·6 = 96
    assert values(r)["activation_bytes"] - values(base)["activation_bytes"] == 96
    assert r.quantity("activation_bytes").measured["torch"] == values(r)["activation_bytes"]


def test_gpt2_logits_bf16_and_fp32():
    # B·n·V = 8·1024·50257 = 411,705,344 logits
    bf16 = loss.analyse(loss.Config(batch=8, seq=1024, vocab=50257, dim=768, dtype="bf16"))
    fp32 = loss.analyse(loss.Config(batch=8, seq=1024, vocab=50257, dim=768, chunks=8))
    # bf16: 2·411,705,344 = 823,410,688; its fp32 copy 4·411,705,344 = 1,646,821,376
    assert term(bf16, Kind.MEMORY, "logits") == 823_410_688
    assert term(bf16, Kind.MEMORY, "upcast") == 1_646_821_376
    assert values(bf16)["logits_bytes"] == 823_410_688 + 1_646_821_376
    # fp32: 4·411,705,344, no copy
    assert values(fp32)["logits_bytes"] == 1_646_821_376
    # head: 2·8192·768·50257 = 2·6,291,456·50257 = 632,379,408,384 FLOPs; 5 per logit
    # 5·411,705,344 = 2,058,526,720 and 3 per row 3·8192 on top
    assert values(fp32)["forward_matmul_flops"] == 632_379_408_384
    assert values(fp32)["forward_flops"] == 632_379_408_384 + 2_058_526_720 + 3 * 8192
    # saved: exp(z − m) and log p in fp32 2·1,646,821,376; x 8192·768·4 = 25,165,824;
    # s 8192·4 = 32,768; y 8192·8 = 65,536
    saved = 2 * 1_646_821_376 + 25_165_824 + 32_768 + 65_536
    assert values(fp32)["activation_bytes"] == saved
    assert fp32.quantity("activation_bytes").measured["torch"] == saved
    # chunked in 8: dx 25,165,824 + dW 50257·768·4 = 154,389,504 saved, 4.6% of it
    assert values(fp32)["chunked_saved_bytes"] == 25_165_824 + 154_389_504
    assert fp32.quantity("chunked_saved_bytes").measured["torch"] == 179_555_328


def test_clip_at_32768_pairs():
    r = loss.analyse(loss.Config(kind="infonce", batch=32768, dim=512))
    # a·bᵀ: 2·32768²·512 = 2·2^30·2^9 = 2^40 = 1,099,511,627,776
    assert r.quantity("forward_matmul_flops").value == 2**40
    assert r.quantity("forward_matmul_flops").measured["torch"] == 2**40
    # backward: da and db, 2·2^40
    assert term(r, Kind.BACKWARD, "similarity_da") + term(r, Kind.BACKWARD, "similarity_db") == (
        2**41
    )
    # the B×B fp32 logits: 2^30·4 = 4,294,967,296 bytes (4 GiB)
    assert values(r)["logits_bytes"] == 2**32
    # saved: a, b 2·32768·512·4 = 2^27; per direction exp and log p 2·2^32, s 2^17;
    # arange(B) once, 2^18
    saved = 2**27 + 2 * (2 * 2**32 + 2**17) + 2**18
    assert values(r)["activation_bytes"] == saved
    assert r.quantity("activation_bytes").measured["torch"] == saved


def test_references_match_torch():
    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 4, requires_grad=True), torch.randint(0, 5, (2, 3))
    whole, chunked = ref.LMHeadLoss(4, 5), ref.ChunkedLMHeadLoss(4, 5, chunks=3)
    chunked.head.weight.data.copy_(whole.head.weight.data)
    expected = F.cross_entropy(whole.head(x).flatten(0, 1), y.flatten())
    torch.testing.assert_close(whole(x, y), expected)
    (dx,) = torch.autograd.grad(whole(x, y), x)
    (dx_chunked,) = torch.autograd.grad(chunked(x, y), x)
    torch.testing.assert_close(dx_chunked, dx)
    # focal at γ = 0 is the cross-entropy
    logp = ref.log_softmax(whole.head(x))
    torch.testing.assert_close(ref.focal(logp, y, 0.0).mean(), expected)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    z, t = a @ b.T / 0.07, torch.arange(4)
    clip = (F.cross_entropy(z, t) + F.cross_entropy(z.T, t)) / 2
    torch.testing.assert_close(ref.InfoNCE(0.07)(a, b), clip)


@pytest.mark.parametrize(
    ("config", "args", "message"),
    [
        ({"kind": "infonce", "seq": 4}, ["--kind", "infonce", "--seq", "4"], "--seq sizes"),
        ({"kind": "infonce", "chunks": 2}, ["--kind", "infonce", "--chunks", "2"], "--chunks"),
        ({"batch": 1, "seq": 3, "chunks": 2}, ["--batch", "1", "--seq", "3", "--chunks", "2"], ""),
    ],
)
def test_bad_combinations_are_one_line(config, args, message):
    # B·n = 1·3 rows do not split into 2 chunks
    message = message or "--chunks 2 must divide the B·n = 3 rows"
    assert_one_line_error(runner.invoke(app, ["loss", *args]), message)
    with pytest.raises(ComplexoError, match=message.split()[0]):
        loss.Config(**config)


def test_focal_gamma_sets_the_weight_not_the_cost():
    """γ = 0 is cross-entropy's value; γ = 3 at p_t = 1/2 weighs −log p_t by (1/2)³; the FLOPs
    and what autograd keeps do not move with γ (the power is one op per token)."""
    import math

    from complexo.analyses.loss import Config, build
    from complexo.blocks.loss import focal, log_softmax, nll
    from complexo.measure import measure_torch

    z = torch.tensor([[[0.0, 0.0], [2.0, -1.0]]])  # (B, n, V) = (1, 2, 2)
    y = torch.tensor([[0, 1]])
    logp = log_softmax(z)
    assert torch.allclose(focal(logp, y, 0.0), nll(logp, y))
    # token 0: p_t = 1/2: (1 − 1/2)³·ln 2 = ln 2 / 8 = 0.0866
    assert focal(logp, y, 3.0)[0, 0].item() == pytest.approx(math.log(2) / 8)
    saved, flops = set(), set()
    for gamma in (None, 0.0, 1.0, 3.0):  # None: the default, 2
        cfg = Config(kind="focal", batch=1, seq=4, vocab=32, dim=8, gamma=gamma)
        module, inputs = build(cfg)
        run = measure_torch(lambda m=module, i=inputs: m(*i), list(module.parameters()))
        saved.add(run.saved_bytes)
        flops.add(loss.analyse(cfg).quantity("forward_flops").value)
    assert len(saved) == 1 and len(flops) == 1
    # the focal terms: 4 forward FLOPs per row, B·n = 4 rows: 16, at any γ
    cfg = Config(kind="focal", batch=1, seq=4, vocab=32, dim=8, gamma=3.0)
    assert loss.analyse(cfg).model.term(Kind.FORWARD, "focal").expr.subs(cfg.values) == 16


def test_gamma_needs_focal_loss():
    result = runner.invoke(app, ["loss", "--gamma", "2"])
    assert_one_line_error(result, "--gamma is focal loss's exponent: it needs --kind focal")
