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

With ``--checkpoint full`` (torch.utils.checkpoint around each block, non-reentrant) the
forward keeps each block's input only, every other tensor going when Python lets go of it;
before each block's backward its forward runs again up to GELU's output (the last tensor it
saves), and a recomputed tensor goes once unpacked: between a linear layer's dW and db (fc2's
GELU output, fc1's norm output, q's norm output), not after both. With ``selective`` (the
attention core q, k, v -> merged heads checkpointed) SDPA's log-sum-exp is not kept, and
before SDPA's backward (out_proj's having let go of y) the core runs again: y and the
log-sum-exp anew. Exact against MemTracker in each mode (tests/test_checkpoint.py).
"""

from __future__ import annotations

from complexo.cost import Kind
from complexo.peak import Ledger
from complexo.symbols import B, C, K, R, d, e, f, h, p


def ledger(cfg, layers: int | None = None) -> Ledger:
    """The step's allocations and frees for ``cfg`` (a vit Config, its ``checkpoint`` mode
    included), as sympy; the blocks unrolled (``cfg``'s model has a fixed number of them,
    ``layers`` another)."""
    from complexo.analyses.vit import PRESETS, TOKENS, cost_model

    layers = PRESETS[cfg.model].layers if layers is None else layers
    mode = getattr(cfg, "checkpoint", "none")
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
        if mode == "full":
            _block_checkpointed(book, i, X, Fh, s, lse)
        else:
            _block_forward(book, i, X, Fh, s, lse, keep_lse=mode == "none")
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
        if mode == "full":  # the block's forward again, as its first saved tensor is unpacked
            _block_forward(book, i, X, Fh, s, lse, keep_lse=True, again=True)
        _block_backward(book, i, X, Fh, lse, mode)
    # the class token's: summed over the batch, a new tensor only when B > 1
    cls = {"g_cls": d * e} if cfg.batch > 1 else {}
    book.alloc("positions' and class token's gradients", g_pos=n * d * e, **cls)
    book.alloc("patch convolution's backward: dW, db", g_conv=(d * C * p**2 + d) * e)
    book.free("grad")
    book.phase = "optimizer"
    return book


def _block_forward(book: Ledger, i, X, Fh, s, lse, *, keep_lse: bool, again=False) -> None:
    """Block i + 1's forward keeping what autograd saves; ``keep_lse`` False: SDPA's
    log-sum-exp goes (selective: the core is checkpointed, its inputs q, k, v and output y are
    kept by the checkpoint and out_proj); ``again``: run in the backward (full), stopped once
    GELU's output, the last tensor saved, is made (fc2 saves only its input, taken before its
    product runs: the product and the residual add are not run again)."""
    b = f"block {i + 1}" + (": recomputed" if again else "")
    book.alloc(f"{b}: LayerNorm", **{f"ln1_{i}": X, f"s1_{i}": s})
    book.alloc(f"{b}: q, k, v", **{f"q{i}": X, f"k{i}": X, f"v{i}": X})
    book.alloc(f"{b}: SDPA", **{f"y{i}": X, f"lse{i}": lse})
    if not keep_lse:
        book.free(f"lse{i}")
    book.alloc(f"{b}: out_proj", o=X)
    book.alloc(f"{b}: residual", **{f"r{i}": X})
    book.free("o")
    book.alloc(f"{b}: LayerNorm", **{f"ln2_{i}": X, f"s2_{i}": s})
    book.alloc(f"{b}: fc1", **{f"h{i}": Fh})
    book.alloc(f"{b}: GELU", **{f"g{i}": Fh})
    if again:
        return
    book.alloc(f"{b}: fc2", o=X)
    book.alloc(f"{b}: residual", **{f"x{i + 1}": X})
    book.free("o")


def _block_checkpointed(book: Ledger, i, X, Fh, s, lse) -> None:
    """Block i + 1's forward under torch.utils.checkpoint (full): every op runs, nothing is
    saved, each tensor goes when Python lets go of it; the block's input x{i} stays (the
    checkpoint saves it to run the block again) and its output is the next block's input."""
    b = f"block {i + 1}"
    book.alloc(f"{b}: LayerNorm", ln=X, s=s)
    book.free("s")
    book.alloc(f"{b}: q, k, v", q=X, k=X, v=X)
    book.alloc(f"{b}: SDPA", y=X, lse=lse)
    book.free("lse")
    book.alloc(f"{b}: out_proj", o=X)
    book.free("ln", "q", "k", "v", "y")  # the attention's locals, and ln_1's output
    book.alloc(f"{b}: residual", r=X)
    book.free("o")
    book.alloc(f"{b}: LayerNorm", ln=X, s=s)
    book.free("s")
    book.alloc(f"{b}: fc1", h=Fh)
    book.alloc(f"{b}: GELU", g=Fh)
    book.free("h")
    book.alloc(f"{b}: fc2", o=X)
    book.free("ln", "g")
    book.alloc(f"{b}: residual", **{f"x{i + 1}": X})
    book.free("o", "r")


def _weight_grads(book: Ledger, b: str, name: str, i: int, saved: str, w, bias, split) -> None:
    """A linear layer's dW and db, and its saved input let go: after both (autograd releases
    the node), or, under a checkpoint, between them (the recomputed input is dropped once
    unpacked, before the bias's sum)."""
    if split:
        book.alloc(f"{b}: {name}'s backward: dW", **{f"g_{name}_{i}": w})
        book.free(saved)
        book.alloc(f"{b}: {name}'s backward: db", **{f"gb_{name}_{i}": bias})
    else:
        book.alloc(f"{b}: {name}'s backward: dW, db", **{f"g_{name}_{i}": w + bias})
        book.free(saved)


def _block_backward(book: Ledger, i: int, X, Fh, lse, mode: str) -> None:
    b, split = f"block {i + 1}", mode == "full"
    book.alloc(f"{b}: fc2's backward: dX", d_g=Fh)
    _weight_grads(book, b, "fc2", i, f"g{i}", f * d * e, d * e, split)
    book.alloc(f"{b}: GELU's backward", d_h=Fh)
    book.free("d_g", f"h{i}")
    book.alloc(f"{b}: fc1's backward: dX", d_ln2=X)
    _weight_grads(book, b, "fc1", i, f"ln2_{i}", d * f * e, f * e, split)
    book.free("d_h")
    book.alloc(f"{b}: LayerNorm's backward", d_r=X, **{f"g_ln2_{i}": 2 * d * e})
    book.free("d_ln2", f"r{i}", f"s2_{i}")
    book.alloc(f"{b}: residual's gradients summed", grad2=X)
    book.free("d_r", "grad")
    book.live["grad"] = book.live.pop("grad2")
    book.alloc(f"{b}: out_proj's backward", d_y=X, **{f"g_o_{i}": (d * d + d) * e})
    if mode == "selective":  # out_proj let go of y; the core runs again for SDPA's backward
        book.free(f"y{i}")
        book.alloc(f"{b}: SDPA recomputed", **{f"y{i}": X, f"lse{i}": lse})
    book.alloc(f"{b}: SDPA's backward: dQ, dK, dV", dq=X, dk=X, dv=X)
    book.free("d_y", f"q{i}", f"k{i}", f"v{i}", f"y{i}", f"lse{i}")
    book.alloc(f"{b}: v's projection backward", dx_v=X, **{f"g_v_{i}": (d * d + d) * e})
    book.free("dv")
    book.alloc(f"{b}: k's projection backward", dx_k=X, **{f"g_k_{i}": (d * d + d) * e})
    book.free("dk")
    book.alloc(f"{b}: x's gradient summed (v, k)", dx_vk=X)
    book.free("dx_v", "dx_k")
    if split:
        book.alloc(f"{b}: q's projection backward: dX, dW", dx_q=X, **{f"g_q_{i}": d * d * e})
        book.free(f"ln1_{i}")
        book.alloc(f"{b}: q's projection backward: db", **{f"gb_q_{i}": d * e})
        book.free("dq")
    else:
        book.alloc(f"{b}: q's projection backward", dx_q=X, **{f"g_q_{i}": (d * d + d) * e})
        book.free("dq", f"ln1_{i}")
    book.alloc(f"{b}: x's gradient summed (q)", dx=X)
    book.free("dx_vk", "dx_q")
    book.alloc(f"{b}: LayerNorm's backward", d_x=X, **{f"g_ln1_{i}": 2 * d * e})
    book.free("dx", f"x{i}", f"s1_{i}")
    book.alloc(f"{b}: residual's gradients summed", grad2=X)
    book.free("d_x", "grad")
    book.live["grad"] = book.live.pop("grad2")


def tracked(cfg, optimizer: str = "sgd", *, full_depth: bool = False):
    """The same step measured by MemTracker under FakeTensorMode; a ViT deeper than three
    blocks on its 2- and 3-block copies, phase by phase (:func:`complexo.deeper.deeper`: its
    blocks are identical), unless ``full_depth``."""
    from complexo.analyses.vit import PRESETS
    from complexo.deeper import deeper
    from complexo.peak import tracked_step

    layers = PRESETS[cfg.model].layers
    if full_depth or layers <= 3:
        return tracked_step(lambda: _build(cfg), optimizer)
    two, three = (tracked_step(lambda k=k: _build(cfg, k), optimizer) for k in (2, 3))
    try:
        return deeper(two, three, layers)
    except ValueError:  # the copies ran more than one block apart: every block, then
        return tracked_step(lambda: _build(cfg), optimizer)


def _build(cfg, layers: int | None = None):
    """The model (with ``layers`` blocks, if given) and its image batch as ``vit.build`` makes
    them, in the current (fake) mode."""
    from complexo.analyses.vit import build

    module, x = build(cfg, device=None, layers=layers)
    return module, (x,)


def all_live(cfg) -> int:
    """What ``vision_profile.memory`` added before the ledger: weights, their gradients and every
    saved activation, as if all were live at once (SGD keeps no state)."""
    from complexo.analyses.vit import cost_model
    from complexo.cost import evaluate

    model, values = cost_model(cfg.checkpoint), cfg.values
    weights = evaluate(model.total(Kind.PARAMS), values) * values[e]
    return 2 * weights + evaluate(model.total(Kind.ACTIVATION), values)


def quantity(cfg):
    """The training step's peak as a quantity, MemTracker's reading beside it, and its note."""
    from complexo.peak import peak_quantity

    return peak_quantity(ledger(cfg), cfg.values, lambda: tracked(cfg), all_live(cfg))
