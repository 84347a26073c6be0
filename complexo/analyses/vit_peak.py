"""A ViT's training step as it really peaks (:mod:`complexo.peak`): a ledger written by reading
``blocks/vit.py`` and autograd's formulas line by line.

X = B·n·d·e (one (B, n, d) tensor), F = B·n·f·e (the MLP's hidden), s = 2·e·B·n (a LayerNorm's
mean and rstd, saved; in the input's dtype on the CPU). Forward: the patch convolution, the
class token concatenated (the convolution's output freed), the positions added (the
concatenation freed); per block the
LayerNorm's output and statistics, q, k, v, SDPA's output and log-sum-exp, out_proj's output
(freed once added to the residual), the second LayerNorm, fc1's output, GELU's, fc2's (freed
once added); the final LayerNorm and the head's logits. All of it is saved but the freed.

Backward, last block first: the head's dX, dW, db (the final norm's output freed); the class
token's gradient scattered into a zero (B, n, d); the final norm's backward; per block the MLP
branch (fc2's dX, an F, with GELU's output still saved: the step's peak, in the last block,
unless the batch is small beside the weights), GELU's backward (its input and fc2's dX freed),
fc1's, the norm's, the residual's sum; then the attention branch (out_proj's, SDPA's dQ, dK,
dV, the projections in autograd's order v, k, q, x's gradient summed, the norm's, the
residual's sum); last the positions', the class token's and the convolution's gradients.
"""

from __future__ import annotations

from complexo.cost import Kind
from complexo.peak import Ledger
from complexo.symbols import B, C, K, R, d, e, f, h, p


def ledger(cfg) -> Ledger:
    """The step's allocations and frees for ``cfg`` (a vit Config), as sympy; the blocks
    unrolled (``cfg``'s model has a fixed number of them)."""
    from complexo.analyses.vit import PRESETS, TOKENS, cost_model

    layers = PRESETS[cfg.model].layers
    n = TOKENS
    # the statistics in the input's dtype, as torch's CPU LayerNorm keeps them (CUDA: fp32)
    X, Fh, s = B * n * d * e, B * n * f * e, 2 * e * B * n
    lse = 4 * B * h * n  # SDPA's log-sum-exp, fp32
    book = Ledger(weights=cost_model().total(Kind.PARAMS) * e, image=B * C * R**2 * e)
    book.alloc("patch convolution", conv=B * d * (R / p) ** 2 * e)
    book.alloc("class token concatenated", cat=X)
    book.free("conv")
    book.alloc("positions added", x0=X)
    book.free("cat")
    for i in range(layers):
        book.alloc(f"block {i + 1}: LayerNorm", **{f"ln1_{i}": X, f"s1_{i}": s})
        book.alloc(f"block {i + 1}: q, k, v", **{f"q{i}": X, f"k{i}": X, f"v{i}": X})
        book.alloc(f"block {i + 1}: SDPA", **{f"y{i}": X, f"lse{i}": lse})
        book.alloc(f"block {i + 1}: out_proj", o=X)
        book.alloc(f"block {i + 1}: residual", **{f"r{i}": X})
        book.free("o")
        book.alloc(f"block {i + 1}: LayerNorm", **{f"ln2_{i}": X, f"s2_{i}": s})
        book.alloc(f"block {i + 1}: fc1", **{f"h{i}": Fh})
        book.alloc(f"block {i + 1}: GELU", **{f"g{i}": Fh})
        book.alloc(f"block {i + 1}: fc2", o=X)
        book.alloc(f"block {i + 1}: residual", **{f"x{i + 1}": X})
        book.free("o")
    book.alloc("final LayerNorm", ln=X, s_ln=s)
    book.alloc("head's logits", logits=B * K * e)
    book.alloc("out.sum() and its seed gradient", loss=2 * e)
    book.phase = "backward"
    book.alloc("head's backward: dX, dW, db", d_cls=B * d * e, g_head=(K * d + K) * e)
    book.free("ln")
    book.alloc("class token's gradient into a zero (B, n, d)", grad=X)
    book.free("d_cls")
    book.alloc("final LayerNorm's backward", d_ln=X, g_ln=2 * d * e)
    book.free("grad", f"x{layers}", "s_ln")
    book.live["grad"] = book.live.pop("d_ln")
    for i in reversed(range(layers)):
        _block_backward(book, i, X, Fh)
    # the class token's: summed over the batch, a new tensor only when B > 1
    cls = {"g_cls": d * e} if cfg.batch > 1 else {}
    book.alloc("positions' and class token's gradients", g_pos=n * d * e, **cls)
    book.alloc("patch convolution's backward: dW, db", g_conv=(d * C * p**2 + d) * e)
    book.free("grad")
    book.phase = "optimizer"
    return book


def _block_backward(book: Ledger, i: int, X, Fh) -> None:
    b = f"block {i + 1}"
    book.alloc(f"{b}: fc2's backward: dX", d_g=Fh)
    book.alloc(f"{b}: fc2's backward: dW, db", **{f"g_fc2_{i}": (f * d + d) * e})
    book.free(f"g{i}")
    book.alloc(f"{b}: GELU's backward", d_h=Fh)
    book.free("d_g", f"h{i}")
    book.alloc(f"{b}: fc1's backward: dX", d_ln2=X)
    book.alloc(f"{b}: fc1's backward: dW, db", **{f"g_fc1_{i}": (d * f + f) * e})
    book.free("d_h", f"ln2_{i}")
    book.alloc(f"{b}: LayerNorm's backward", d_r=X, **{f"g_ln2_{i}": 2 * d * e})
    book.free("d_ln2", f"r{i}", f"s2_{i}")
    book.alloc(f"{b}: residual's gradients summed", grad2=X)
    book.free("d_r", "grad")
    book.live["grad"] = book.live.pop("grad2")
    book.alloc(f"{b}: out_proj's backward", d_y=X, **{f"g_o_{i}": (d * d + d) * e})
    book.alloc(f"{b}: SDPA's backward: dQ, dK, dV", dq=X, dk=X, dv=X)
    book.free("d_y", f"q{i}", f"k{i}", f"v{i}", f"y{i}", f"lse{i}")
    book.alloc(f"{b}: v's projection backward", dx_v=X, **{f"g_v_{i}": (d * d + d) * e})
    book.free("dv")
    book.alloc(f"{b}: k's projection backward", dx_k=X, **{f"g_k_{i}": (d * d + d) * e})
    book.free("dk")
    book.alloc(f"{b}: x's gradient summed (v, k)", dx_vk=X)
    book.free("dx_v", "dx_k")
    book.alloc(f"{b}: q's projection backward", dx_q=X, **{f"g_q_{i}": (d * d + d) * e})
    book.free("dq", f"ln1_{i}")
    book.alloc(f"{b}: x's gradient summed (q)", dx=X)
    book.free("dx_vk", "dx_q")
    book.alloc(f"{b}: LayerNorm's backward", d_x=X, **{f"g_ln1_{i}": 2 * d * e})
    book.free("dx", f"x{i}", f"s1_{i}")
    book.alloc(f"{b}: residual's gradients summed", grad2=X)
    book.free("d_x", "grad")
    book.live["grad"] = book.live.pop("grad2")


def tracked(cfg, optimizer: str = "sgd"):
    """The same step measured by MemTracker under FakeTensorMode."""
    from complexo.peak import tracked_step

    return tracked_step(lambda: _build(cfg), optimizer)


def _build(cfg):
    """The model and its image batch as ``vit.build`` makes them, in the current (fake)
    mode."""
    from complexo.analyses.vit import build

    module, x = build(cfg, device=None)
    return module, (x,)


def all_live(cfg) -> int:
    """What ``vision_profile.memory`` added before the ledger: weights, their gradients and every
    saved activation, as if all were live at once (SGD keeps no state)."""
    from complexo.analyses.vit import cost_model
    from complexo.cost import evaluate

    model, values = cost_model(), cfg.values
    weights = evaluate(model.total(Kind.PARAMS), values) * values[e]
    return 2 * weights + evaluate(model.total(Kind.ACTIVATION), values)


def quantity(cfg):
    """The training step's peak as a quantity, MemTracker's reading beside it, and its note."""
    from complexo.peak import peak_quantity

    return peak_quantity(ledger(cfg), cfg.values, lambda: tracked(cfg), all_live(cfg))
