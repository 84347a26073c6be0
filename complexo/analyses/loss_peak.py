"""A loss's training step as it really peaks (:mod:`complexo.peak`): ledgers written by reading
``blocks/loss.py`` (the written-out reference) and autograd's formulas line by line.

Cross-entropy behind an LM head, N = B·n rows of V logits, Z = 4·N·V bytes (one fp32 (B, n, V)
tensor), r = 4·N (one fp32 value per row). Forward: the head's logits (in bf16/fp16 their
fp32 copy, the 16-bit ones freed by the cast); ``log_softmax`` holds z, z − m, exp(z − m) and
log p at once, which is the step's peak unless the batch is tiny (its locals m, z − m, log s
are freed at its return; exp's output is saved by exp, s by log, log p by gather, whose
backward asks for its input). Backward: gather's backward makes a zero (B, n, V) tensor and
scatters into a second (out of place), so with exp(z − m) and log p four Z are live again, two
fewer r than the forward's; the sub's, log's and exp's gradients follow (one Z each, the
previous freed), then the head's dW and dX.

Focal loss adds a chain over the N picked log-probabilities (exp, 1 − p, its power, its
negation, the product: four of them saved), r-sized: it moves no peak.

InfoNCE (CLIP): the B×B similarities z (fp32, scaled), and two log-softmaxes, over z and its
transpose; each holds what the LM head's does, over B×B.
"""

from __future__ import annotations

from complexo.conventions import FP32_BYTES
from complexo.cost import Kind
from complexo.peak import Ledger
from complexo.symbols import B, V, d, e, n

INT64_BYTES = 8


def ledger(cfg) -> Ledger:
    """The step's allocations and frees for ``cfg`` (a loss Config), as sympy."""
    if cfg.kind == "infonce":
        return _infonce(cfg)
    from complexo.analyses.loss_cost import cost_model

    N = B * n
    Z, r = FP32_BYTES * N * V, FP32_BYTES * N
    weights = cost_model(cfg.kind, cfg.dtype == "fp32").total(Kind.PARAMS) * e
    book = Ledger(weights=weights, x=N * d * e, y=INT64_BYTES * N)
    half = cfg.dtype != "fp32"
    if half:
        book.alloc("head logits x·Wᵀ", z16=N * V * e)
        book.alloc("logits upcast to fp32", z=Z)
        book.free("z16")
    else:
        book.alloc("head logits x·Wᵀ", z=Z)
    _log_softmax(book, Z, r)
    book.alloc("gather: each row's target log p", picked=r)
    if cfg.kind == "focal":
        book.alloc("focal: exp, 1 − p, its power, its negation", e1=r, e2=r, pw=r, ng=r)
        book.free("pw")
        book.alloc("focal: the product", fl=r)
        book.alloc("mean", loss=FP32_BYTES)
        book.free("z", "fl")  # z: forward's local (z − m did not save it)
        saved = ["picked", "e1", "e2", "ng"]
    else:
        book.alloc("nll: negated", ng=r)
        book.free("picked")
        book.alloc("mean", loss=FP32_BYTES)
        book.free("z", "ng")
        saved = []
    book.alloc("out.sum() and its seed gradient", total=2 * FP32_BYTES)
    book.phase = "backward"
    book.alloc("mean's backward: grad / N", g_mean=r)
    if cfg.kind == "focal":
        book.alloc("focal's backward (r-sized)", g_f1=r, g_f2=r)
        book.free("g_mean", "g_f1", "g_f2", *saved)
        book.alloc("focal's backward: d log p_t", g_picked=r)
    else:
        book.alloc("neg's backward", g_picked=r)
        book.free("g_mean")
    book.alloc("gather's backward: zeros", zeros=Z)
    book.alloc("gather's backward: scatter_add (out of place)", g_logp=Z)
    book.free("zeros", "logp", "g_picked")
    book.alloc("log p = zc − log s: −grad summed per row", neg=Z, g_logs=r)
    book.free("neg")
    book.alloc("log's backward: grad / s", g_s=r)
    book.free("g_logs", "s")
    book.alloc("exp's backward: grad · exp(z − m)", g_exp=Z)
    book.free("ez", "g_s")
    book.alloc("z − m's gradient summed over its two uses", g_z=Z)
    book.free("g_logp", "g_exp")
    if half:
        book.alloc("the logits' gradient cast to the head's dtype", g_z16=N * V * e)
        book.free("g_z")
        book.live["g_z"] = book.live.pop("g_z16")
    book.alloc("head's backward: dW", g_w=V * d * e)
    book.alloc("head's backward: dX", g_x=N * d * e)
    book.free("g_z")
    book.phase = "optimizer"
    return book


def _log_softmax(book: Ledger, Z, r, tag: str = "") -> None:
    """m, z − m, exp(z − m), its row sums s, log s, log p; then the locals m, z − m and log s
    freed at the function's return."""
    book.alloc("log_softmax: row max m", **{f"m{tag}": r})
    book.alloc("log_softmax: z − m", **{f"zc{tag}": Z})
    book.alloc("log_softmax: exp(z − m) (saved)", **{f"ez{tag}": Z})
    book.alloc("log_softmax: row sums s (saved)", **{f"s{tag}": r})
    book.alloc("log_softmax: log s", **{f"logs{tag}": r})
    book.alloc("log_softmax: log p", **{f"logp{tag}": Z})
    book.free(f"m{tag}", f"zc{tag}", f"logs{tag}")


def _infonce(cfg) -> Ledger:
    """a·bᵀ (B×B; in 16 bits its fp32 copy), scaled out of place; the targets arange(B); the
    rows' log-softmax and nll, then the columns' over zᵀ (the rows' exp, s and log p still
    saved); the mean of the two. Backward: the columns' chain first (the later one), then the
    rows', each as the LM head's; z's two gradients summed, the scale's, then a's and b's
    (b's gradient, a transposed product, copied into b's layout by AccumulateGrad)."""
    Z, r = FP32_BYTES * B**2, FP32_BYTES * B
    book = Ledger(a=B * d * e, b=B * d * e)
    half = cfg.dtype != "fp32"
    book.alloc("similarities a·bᵀ", ab=B**2 * e)
    if half:
        book.alloc("similarities upcast to fp32", ab32=Z)
        book.free("ab")
        book.live["ab"] = book.live.pop("ab32")
    book.alloc("scaled by 1/τ (out of place)", z=Z)
    book.free("ab")
    book.alloc("targets arange(B)", y=INT64_BYTES * B)
    for tag in ("1", "2"):
        _log_softmax(book, Z, r, tag)
        book.alloc("gather and negate", **{f"picked{tag}": r, f"ng{tag}": r})
        book.free(f"picked{tag}")
        book.alloc("mean", **{f"loss{tag}": FP32_BYTES})
        book.free(f"ng{tag}")
    book.alloc("(rows + cols) / 2", add=FP32_BYTES, mean=FP32_BYTES)
    book.free("z", "loss1", "loss2", "add")  # z: a local; scale's backward needs no input
    book.alloc("out.sum() and its seed gradient", total=2 * FP32_BYTES)
    book.phase = "backward"
    book.alloc("/ 2's backward", g_half=FP32_BYTES)
    for tag in ("2", "1"):
        book.alloc("mean's backward: grad / B", **{f"g_mean{tag}": r})
        if tag == "1":
            book.free("g_half")
        book.alloc("neg's backward", **{f"g_picked{tag}": r})
        book.free(f"g_mean{tag}")
        book.alloc("gather's backward: zeros", zeros=Z)
        book.alloc("gather's backward: scatter_add (out of place)", **{f"g_logp{tag}": Z})
        book.free("zeros", f"logp{tag}", f"g_picked{tag}", *(["y"] if tag == "1" else []))
        book.alloc("log p's backward: −grad summed per row", neg=Z, g_logs=r)
        book.free("neg")
        book.alloc("log's backward: grad / s", g_s=r)
        book.free("g_logs", f"s{tag}")
        book.alloc("exp's backward", g_exp=Z)
        book.free(f"ez{tag}", "g_s")
        book.alloc("z − m's gradient summed over its two uses", **{f"g_z{tag}": Z})
        book.free(f"g_logp{tag}", "g_exp")
    book.alloc("z's gradient summed over rows and columns", g_z=Z)
    book.free("g_z1", "g_z2")
    book.alloc("scale's backward", g_ab=Z)
    book.free("g_z")
    if half:
        book.alloc("the similarities' gradient cast down", g_ab16=B**2 * e)
        book.free("g_ab")
        book.live["g_ab"] = book.live.pop("g_ab16")
    book.alloc("a·bᵀ's backward: da, db", g_a=B * d * e, g_b=B * d * e)
    book.free("g_ab")
    book.alloc("db copied into b's layout", g_b_copy=B * d * e)
    book.free("g_b_copy")
    book.phase = "optimizer"
    return book


def tracked(cfg, optimizer: str = "sgd"):
    """The same step measured by MemTracker under FakeTensorMode."""
    from complexo.peak import tracked_step

    return tracked_step(lambda: _build(cfg), optimizer)


def _build(cfg):
    """The reference loss and its inputs as ``loss.build`` makes them, in the current (fake)
    mode (parameters cast after building, as its ``module.to(dtype)``)."""
    import torch

    from complexo.blocks import loss as ref
    from complexo.conventions import torch_dtype
    from complexo.peak import cast_parameters

    dtype = torch_dtype(cfg.dtype)
    if cfg.kind == "infonce":
        a, b = (torch.randn(cfg.batch, cfg.dim, dtype=dtype) for _ in range(2))
        return ref.InfoNCE(), (a.requires_grad_(), b.requires_grad_())
    V_, n_ = cfg.size("vocab"), cfg.size("seq")
    module = ref.LMHeadLoss(cfg.dim, V_, cfg.kind)
    cast_parameters(module, dtype)
    x = torch.randn(cfg.batch, n_, cfg.dim, dtype=dtype, requires_grad=True)
    y = torch.randint(0, V_, (cfg.batch, n_))
    return module, (x, y)


def all_live(cfg) -> int:
    """What ``loss_profile.memory`` added before the ledger: the inputs, the logits (and their
    fp32 copy), two fp32 passes, every saved activation, the logits' and weights' gradients
    and the inputs again, as if all were live at once."""
    from complexo.analyses.loss_profile import _sizes, model
    from complexo.cost import evaluate

    m = model(cfg)
    rows_, width, inputs = _sizes(cfg)
    held = inputs + m.total(Kind.MEMORY, tag="logits") + 2 * rows_ * width * FP32_BYTES
    held += m.total(Kind.ACTIVATION) + m.total(Kind.MEMORY, tag="grad") + inputs
    return evaluate(held, cfg.values)


def quantity(cfg):
    """The training step's peak as a quantity, MemTracker's reading beside it, and its note."""
    from complexo.peak import peak_quantity

    return peak_quantity(ledger(cfg), cfg.values, lambda: tracked(cfg), all_live(cfg))
