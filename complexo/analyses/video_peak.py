"""The video attentions' training steps as they really peak (:mod:`complexo.peak`): ledgers
written by reading ``blocks/video.py`` and ``blocks/attention.py`` (``NaiveMHSA``) and autograd's
formulas line by line.

Every layout of the clip's tokens is X = B·T·S·d·e bytes: (B, T·S, d) for joint attention,
(B·S, T, d) for the temporal layer, (B·T, S, d) for the spatial one. An attention layer over Bq
sequences of n tokens holds score matrices of Bq·h·n²·e (n = T·S joint, T temporal, S spatial).

A layer's forward: q, k, v; where torch.matmul must copy the heads to fold (Bq, h) into one
batch dimension (Bq > 1 and h > 1), q's, k's and v's contiguous copies, which the products save
(the projections' outputs freed at the forward's return); the scores, scaled out of place (the
first freed), softmax's P (saved); A·V, the heads merged by a copy (h > 1), the output
projection. Its backward: out_proj's dX (with biases ``addmm``'s order dX, dW, db; without,
``mm``'s dW, dX), the merged heads freed; the heads' gradient copied contiguous (the same
condition as the forward's copies); dV and dP; softmax's dS (P and dP freed: three matrices of
scores live at once, the attention's own high-water mark); the scale's; dQ and dK; then the
projections' backward in autograd's order, v, k, q, each gradient copied into (Bq, n, d) first
where its layout needs it (v's and q's for h > 1, k's for Bq > 1), x's two partial gradients
summed after k's and q's; the layer's saved input freed after q's.

Factorized (TimeSformer's order): the clip transposed to (B, S, T, d) by a copy, the temporal
layer, its output transposed back by a copy (the temporal output freed), the spatial layer. Its
step peaks at the forward's end where the scores are small beside X: both layers' saved
tensors (two inputs, q, k, v, merged heads and P each) and the output are live at once. The
backward runs the spatial layer's, copies its input's gradient back into the temporal layout,
the temporal layer's, and AccumulateGrad copies x's gradient into x's own layout (it comes
transposed). Joint is one layer over the T·S tokens: ``mhsa --impl naive`` at n = T·S.
Window: see :func:`_window`; which of its reshapes copy is read off meta tensors of its shapes.
Sequences of one token and head size 1 make some of these copies views: the rules below say
which, and the tests hold them to MemTracker. Head size 1 merges the heads by a strided view,
which out_proj's matmul copies while A·V's output lives on (:func:`_unit_heads_out`); windows
of one token along an axis merge back by a view, whose crop then copies. 800 random clips
(every attention, head sizes 1 and 2, windows of 1 to 3 tokens an axis, padded or not) agree
with MemTracker to the byte in every phase.
"""

from __future__ import annotations

from complexo.cost import Kind
from complexo.peak import Ledger
from complexo.symbols import B, S, T, d, e, h


def _layouts(book, seqs: int, tokens: int) -> tuple[bool, bool, bool]:
    """(copies, heads, keys) for ``seqs`` sequences of ``tokens`` tokens: whether the batched
    products copy q, k, v (and the heads' gradient); whether merging the heads and v's and q's
    gradients copy (h > 1); whether k's gradient does (Bq > 1). A sequence of one token makes
    every one of these a view."""
    many = tokens > 1
    return seqs > 1 and book.heads > 1 and many, book.heads > 1 and many, seqs > 1 and many


def _layer_forward(book: Ledger, tag: str, inp: str, seqs: int, n, tokens: int, bias: bool):
    """One ``NaiveMHSA`` forward over ``seqs`` sequences of n tokens (``tokens``: n's value,
    which with ``seqs`` decides the copies); ``inp`` is live and saved by the projections."""
    X = book.X
    scores = X / d * h * n  # Bq·h·n²·e = (B·T·S·e)·h·n
    copies, heads, _ = _layouts(book, seqs, tokens)
    book.alloc(f"{tag}: q, k, v projections", **{f"{tag}_q": X, f"{tag}_k": X, f"{tag}_v": X})
    if copies:
        book.alloc(
            f"{tag}: q, k copied for the batched product", **{f"{tag}_qc": X, f"{tag}_kc": X}
        )
    book.alloc(f"{tag}: scores Q·Kᵀ", **{f"{tag}_s1": scores})
    book.alloc(f"{tag}: scaled scores (out of place)", **{f"{tag}_s2": scores})
    book.free(f"{tag}_s1")
    book.alloc(f"{tag}: softmax P (saved)", **{f"{tag}_p": scores})
    book.free(f"{tag}_s2")
    if copies:
        book.alloc(f"{tag}: v copied for the batched product", **{f"{tag}_vc": X})
    book.alloc(f"{tag}: A·V", **{f"{tag}_y": X})
    if heads and book.unit:
        _unit_heads_out(book, tag, seqs, bias)
    elif heads:
        book.alloc(f"{tag}: heads merged (a copy)", **{f"{tag}_merged": X})
        book.free(f"{tag}_y")
    else:
        book.live[f"{tag}_merged"] = book.live.pop(f"{tag}_y")
    if not (heads and book.unit):
        book.alloc(f"{tag}: out projection", **{f"{tag}_out": X})
    if copies:  # the projections' outputs were forward's locals; their copies are saved
        for name in "qkv":
            book.free(f"{tag}_{name}")
            book.live[f"{tag}_{name}"] = book.live.pop(f"{tag}_{name}c")
    book.inputs[tag] = inp  # what the projections saved, freed after the layer's backward


def _unit_heads_out(book: Ledger, tag: str, seqs: int, bias: bool) -> None:
    """Head size 1 over several heads and tokens: merging the heads is a strided view of A·V's
    output, so F.linear takes torch.matmul, which folds it to (Bq·n, d) by a copy (saved; for
    one sequence a transposed view that mm takes as it is) while A·V's output lives on, then
    mm, then the bias added (out of place under FakeTensorMode, a tensor subclass; in place on
    real tensors)."""
    X, y = book.X, f"{tag}_y"
    if seqs > 1:
        book.alloc(
            f"{tag}: out projection: its matmul's copy of the merged heads", **{f"{tag}_merged": X}
        )
    book.alloc(f"{tag}: out projection: mm", **{f"{tag}_out": X})
    if bias:
        book.alloc(f"{tag}: out projection: + the bias (out of place)", **{f"{tag}_outb": X})
        book.free(f"{tag}_out")
        book.live[f"{tag}_out"] = book.live.pop(f"{tag}_outb")
    if seqs > 1:
        book.free(y)
    else:
        book.live[f"{tag}_merged"] = book.live.pop(y)


def _linear_backward(book: Ledger, what: str, dx: dict, bias: bool) -> None:
    grads = {f"g_w_{what}": d * d * e}
    if bias:
        book.alloc(f"{what}'s backward: dX", **dx)
        book.alloc(f"{what}'s backward: dW, db", **grads, **{f"g_b_{what}": d * e})
    else:
        book.alloc(f"{what}'s backward: dW", **grads)
        book.alloc(f"{what}'s backward: dX", **dx)


def _layer_backward(book: Ledger, tag: str, seqs: int, n, tokens: int, bias: bool, incoming):
    """The layer's backward, from its output's gradient (``incoming``, freed after out_proj's
    backward; None: the loss's seed, a view); leaves its input's gradient as ``{tag}_dx``."""
    X = book.X
    scores = X / d * h * n
    copies, heads, keys = _layouts(book, seqs, tokens)
    inp = book.inputs[tag]
    _linear_backward(book, f"{tag} out_proj", {f"{tag}_dm": X}, bias)
    book.free(f"{tag}_merged", *([incoming] if incoming else []))
    dm = f"{tag}_dm"
    if copies:
        book.alloc(f"{tag}: the heads' gradient made contiguous", **{f"{tag}_dmc": X})
        book.free(dm)
        dm = f"{tag}_dmc"
    book.alloc(f"{tag}: A·V backward: dV", **{f"{tag}_dv": X})
    book.alloc(f"{tag}: A·V backward: dP", **{f"{tag}_dp": scores})
    book.free(dm, f"{tag}_v")
    book.alloc(f"{tag}: softmax backward: dS", **{f"{tag}_ds": scores})
    book.free(f"{tag}_p", f"{tag}_dp")
    book.alloc(f"{tag}: scale backward", **{f"{tag}_dss": scores})
    book.free(f"{tag}_ds")
    book.alloc(f"{tag}: Q·Kᵀ backward: dQ, dK", **{f"{tag}_dq": X, f"{tag}_dk": X})
    book.free(f"{tag}_dss", f"{tag}_q", f"{tag}_k")

    def contiguous(name: str, needed: bool) -> str:
        if not needed:
            return name
        book.alloc(f"{tag}: {name[-2:]}'s heads made contiguous", **{f"{name}c": X})
        book.free(name)
        return f"{name}c"

    dv = contiguous(f"{tag}_dv", heads)
    _linear_backward(book, f"{tag} v_proj", {f"{tag}_xv": X}, bias)
    book.free(dv)
    dq = contiguous(f"{tag}_dq", heads)  # autograd reaches q's copy before k's projection
    dk = contiguous(f"{tag}_dk", keys)
    _linear_backward(book, f"{tag} k_proj", {f"{tag}_xk": X}, bias)
    book.free(dk)
    book.alloc(f"{tag}: the input's gradient summed (v, k)", **{f"{tag}_xvk": X})
    book.free(f"{tag}_xv", f"{tag}_xk")
    _linear_backward(book, f"{tag} q_proj", {f"{tag}_xq": X}, bias)
    book.free(dq, *([inp] if inp != "x" else []))
    book.alloc(f"{tag}: the input's gradient summed (q)", **{f"{tag}_dx": X})
    book.free(f"{tag}_xvk", f"{tag}_xq")


class _Book(Ledger):
    """A ledger that knows the config's head count (what decides the copies)."""

    def __init__(self, heads: int, X, unit: bool = False, **given):
        super().__init__(**given)
        self.heads = heads
        self.unit = unit  # head size 1: merging the heads is a strided view
        self.X = X  # one layout of the (padded) clip's tokens
        self.inputs: dict[str, str] = {}  # each layer's saved input


def ledger(cfg) -> Ledger:
    """The step's allocations and frees for ``cfg`` (a video Config), as sympy over B, T, S,
    d, h, e (and the window's w_t, w_h, w_w)."""
    from complexo.analyses.video_cost import cost_model

    X = B * T * S * d * e
    weights = cost_model(cfg.attn, cfg.bias).total(Kind.PARAMS) * e
    frames, tokens = cfg.frames, cfg.side**2
    if cfg.attn == "window":
        return _window(cfg, weights)
    book = _Book(cfg.heads, X, cfg.dim == cfg.heads, weights=weights, x=X)
    if cfg.attn == "joint":
        _layer_forward(book, "joint", "x", cfg.batch, T * S, frames * tokens, cfg.bias)
        book.live["out"] = book.live.pop("joint_out")
        book.alloc("out.sum() and its seed gradient", loss=2 * e)
        book.phase = "backward"
        _layer_backward(book, "joint", cfg.batch, T * S, frames * tokens, cfg.bias, None)
    else:
        transposes = frames > 1 and tokens > 1  # a transpose of (T, S) is a view otherwise
        if transposes:
            book.alloc("the clip transposed to (B·S, T, d) (a copy)", xt=X)
        inp, seqs = "xt" if transposes else "x", cfg.batch * tokens
        _layer_forward(book, "temporal", inp, seqs, T, frames, cfg.bias)
        if transposes:
            book.alloc("the temporal output transposed to (B·T, S, d) (a copy)", xs=X)
            book.free("temporal_out")
        else:
            book.live["xs"] = book.live.pop("temporal_out")
        _layer_forward(book, "spatial", "xs", cfg.batch * frames, S, tokens, cfg.bias)
        book.live["out"] = book.live.pop("spatial_out")
        book.alloc("out.sum() and its seed gradient", loss=2 * e)
        book.phase = "backward"
        _layer_backward(book, "spatial", cfg.batch * frames, S, tokens, cfg.bias, None)
        if transposes:
            book.alloc("the temporal output's gradient made contiguous", d_t=X)
            book.free("spatial_dx")
        else:
            book.live["d_t"] = book.live.pop("spatial_dx")
        _layer_backward(book, "temporal", seqs, T, frames, cfg.bias, "d_t")
        if transposes:
            book.alloc("x's gradient copied into x's layout (AccumulateGrad)", g_x=X)
            book.free("temporal_dx")
    book.free("loss")
    book.phase = "optimizer"
    return book


def _window_layouts(cfg) -> dict:
    """What the reference's window partition and its inverse copy, read off meta tensors of
    its shapes (whether a permute or a crop leaves a contiguous tensor is torch's layout
    rule, not a formula): the padded grid, the windows, the slices that crop the padding."""
    import torch

    B_, T_, side, d_ = cfg.batch, cfg.frames, cfg.side, cfg.dim
    wt, wh, ww = cfg.clipped
    pads = (-T_ % wt, -side % wh, -side % ww)
    Tp, Hp, Wp = T_ + pads[0], side + pads[1], side + pads[2]
    t, hh, w_ = Tp // wt, Hp // wh, Wp // ww
    grid = torch.empty(B_, t, wt, hh, wh, w_, ww, d_, device="meta")
    windows = grid.permute(0, 1, 3, 5, 2, 4, 6, 7)  # forward: (B, t, hh, ww_, wt, wh, ww, d)
    back = torch.empty(B_, t, hh, w_, wt, wh, ww, d_, device="meta").permute(0, 1, 4, 2, 5, 3, 6, 7)
    # the crop slices the merged grid as the merge leaves it: a copy is contiguous, a view
    # keeps the windows' order in memory (windows of one token along an axis)
    cropped = back.reshape(B_, Tp, Hp, Wp, d_)[:, :T_, :side, :side]
    return {
        "pads": pads,
        "padded": (Tp, Hp, Wp),
        "partition": not windows.is_contiguous(),  # .contiguous() copies
        "merge": not _views(back, (B_, Tp, Hp, Wp, d_)),  # reshape copies
        "crop": not _views(cropped, (B_, T_, side * side, d_)),
    }


def _views(tensor, shape) -> bool:
    """Whether ``tensor.reshape(shape)`` is a view (else reshape copies)."""
    try:
        tensor.view(shape)
    except RuntimeError:
        return False
    return True


def _window(cfg, weights) -> Ledger:
    """Window attention: x padded (a copy, not saved) where the grid is no multiple of the
    window, cut into windows by a contiguous copy (the layer's saved input), one attention layer
    over the B·nW windows, the windows merged back by a copy (the layer's output freed), the
    padding cropped (a copy where the crop is not contiguous). Backward: each crop's slice
    gives a zero tensor of its input's shape with the gradient written in, the merge's gradient
    made contiguous for out_proj, the layer's, the partition's gradient copied back into the
    padded grid, and the pad's backward cuts x's gradient out of it."""
    from complexo.analyses.video_cost import WINDOWS, N

    lay = _window_layouts(cfg)
    X, Xp = B * T * S * d * e, B * N * WINDOWS * d * e
    book = _Book(cfg.heads, Xp, cfg.dim == cfg.heads, weights=weights, x=X)
    padded = any(lay["pads"])
    if padded:
        book.alloc("F.pad: the grid padded to whole windows", xpad=Xp)
    src = "xpad" if padded else "x"
    if lay["partition"]:
        book.alloc("the windows cut out (a contiguous copy)", xw=Xp)
        if padded:
            book.free("xpad")
        src = "xw"
    elif padded:
        book.live["xw"] = book.live.pop("xpad")
        src = "xw"
    wt, wh, ww = cfg.clipped
    windows = cfg.batch * (lay["padded"][0] // wt) * (lay["padded"][1] // wh)
    windows *= lay["padded"][2] // ww
    _layer_forward(book, "window", src, windows, N, wt * wh * ww, cfg.bias)
    last = "window_out"
    if lay["merge"]:
        book.alloc("the windows merged back (a copy)", merged_back=Xp)
        book.free(last)
        last = "merged_back"
    if lay["crop"]:
        book.alloc("the padding cropped (a copy)", out=X)
        book.free(last)
    else:
        book.live["out"] = book.live.pop(last)
    book.alloc("out.sum() and its seed gradient", loss=2 * e)
    book.phase = "backward"
    incoming = None
    (T_, side), (Tp, Hp, Wp) = (cfg.frames, cfg.side), lay["padded"]
    shape = [T_, side, side]
    full = [Tp, Hp, Wp]
    grads = []
    for axis in (2, 1, 0):  # the crop's slices, the last first
        if lay["pads"][axis]:
            shape[axis] = full[axis]
            size = B * shape[0] * shape[1] * shape[2] * d * e
            book.alloc(f"the crop's backward along axis {axis + 1}", **{f"d_crop{axis}": size})
            if grads:
                book.free(grads[-1])
            grads.append(f"d_crop{axis}")
    if grads and lay["merge"]:  # a permuted view of the crop's gradient: out_proj copies it
        book.alloc("the merged windows' gradient made contiguous", d_o=Xp)
        book.free(grads[-1])
        incoming = "d_o"
    elif grads:
        incoming = grads[-1]
    _layer_backward(book, "window", windows, N, wt * wh * ww, cfg.bias, incoming)
    last = "window_dx"
    if lay["partition"]:
        book.alloc("the windows' gradient copied back into the grid", d_grid=Xp)
        book.free(last)
        last = "d_grid"
    if padded:
        book.alloc("F.pad's backward: x's gradient cut out", g_x=X)
        book.free(last)
    book.free("loss")
    book.phase = "optimizer"
    return book


def tracked(cfg, optimizer: str = "sgd"):
    """The same step measured by MemTracker under FakeTensorMode
    (:func:`complexo.peak.tracked_build`)."""
    from complexo.analyses.video import build
    from complexo.peak import tracked_build

    return tracked_build(build, cfg, optimizer=optimizer)


def all_live(cfg) -> int:
    """The sum the issue measured against: weights and their gradients, x, the output and every
    saved activation, as if all were live at once (SGD keeps no state)."""
    from complexo.analyses.video_cost import cost_model
    from complexo.cost import evaluate

    model, values = cost_model(cfg.attn, cfg.bias), cfg.values
    weights = evaluate(model.total(Kind.PARAMS), values) * values[e]
    X = evaluate(B * T * S * d * e, values)
    return 2 * weights + 2 * X + evaluate(model.total(Kind.ACTIVATION), values)


def quantity(cfg):
    """The training step's peak as a quantity, MemTracker's reading beside it, and its note."""
    from complexo.peak import peak_quantity

    return peak_quantity(ledger(cfg), cfg.values, lambda: tracked(cfg), all_live(cfg))
