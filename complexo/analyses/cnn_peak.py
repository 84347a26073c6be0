"""A ResNet's training step as it really peaks (:mod:`complexo.peak`): a ledger written by reading
``blocks/resnet.py`` and autograd's formulas line by line, layer by layer of the preset.

A map of c channels at side s is B·c·s²·e bytes (s = ⌈R/2^k⌉ at total stride 2^k). Forward:
every convolution's output is saved by its BatchNorm, every BatchNorm's output (ReLU'd in
place) by the ReLU and the next convolution; each BatchNorm also saves its batch mean and
inverse deviation (c each, in the input's dtype on the CPU); max pooling saves int64 indices;
a shortcut's BatchNorm output is added in place and freed at the block's end; the average
pool's output is saved by
the classifier. Backward, last block first: the classifier's, the pool's; per block the ReLU's
gradient (shared by the main branch and the shortcut), then the main branch's BatchNorms and
convolutions from the last (each convolution's dX and dW; each saved input freed once its
last user is done), the shortcut's, and the two gradients of the block's input summed; last
the stem's, whose convolution computes no dX (the image needs no gradient).
"""

from __future__ import annotations

import sympy

from complexo.peak import Ledger
from complexo.symbols import B, R, e

INT64 = 8


def ledger(cfg) -> Ledger:
    """The step's allocations and frees for ``cfg`` (a cnn Config), as sympy over B, R, e."""
    from complexo.analyses.cnn import PRESETS

    arch = PRESETS[cfg.model]
    bottleneck = arch.block == "bottleneck"
    w0, C_img, K_ = arch.width, arch.channels, arch.classes

    def fmap(c, k):  # a (B, c, s, s) map at total stride 2^k
        return B * c * sympy.ceiling(R / 2**k) ** 2 * e

    # BatchNorm's saved mean and inverse deviation, in the input's dtype on the CPU
    stats = lambda c: 2 * e * c  # noqa: E731
    bns: list[int] = [w0]  # every BatchNorm's channels, for the buffers
    blocks = []  # (c_in, width, c_out, k_in, k_out, shortcut)
    c_in, k = w0, 2
    for i, depth in enumerate(arch.depths):
        width = w0 * 2**i
        c_out = width * (4 if bottleneck else 1)
        for j in range(depth):
            stride2 = i > 0 and j == 0
            shortcut = stride2 or c_in != c_out
            blocks.append((c_in, width, c_out, k, k + stride2, shortcut))
            convs = [width, width, c_out] if bottleneck else [width, c_out]
            bns += convs + ([c_out] if shortcut else [])
            c_in, k = c_out, k + stride2
    params = _params(arch, bns, blocks, bottleneck)
    buffers = sum(2 * c * e + INT64 for c in bns)  # running mean, variance; batches seen
    book = Ledger(weights=params * e, buffers=buffers, image=B * C_img * R**2 * e)
    book.alloc("stem: 7×7 convolution", c0=fmap(w0, 1))
    book.alloc("stem: BatchNorm (ReLU in place)", a0=fmap(w0, 1), s0=stats(w0))
    book.alloc("stem: max pool and its int64 indices", x0=fmap(w0, 2), idx=fmap(w0, 2) * INT64 / e)
    for n_, (ci, width, co, ki, ko, shortcut) in enumerate(blocks):
        _block_forward(book, n_, ci, width, co, ki, ko, shortcut, bottleneck, fmap, stats)
    c_last = blocks[-1][2]
    book.alloc("average pool", pooled=B * c_last * e)
    book.alloc("classifier's logits", logits=B * K_ * e)
    book.alloc("out.sum() and its seed gradient", loss=2 * e)
    book.phase = "backward"
    book.alloc(
        "classifier's backward: dX, dW, db", d_pool=B * c_last * e, g_fc=(K_ * c_last + K_) * e
    )
    book.free("pooled")
    book.alloc("average pool's backward: the gradient ÷ s²", grad=B * c_last * e)
    book.free("d_pool")
    for n_ in reversed(range(len(blocks))):
        _block_backward(book, n_, blocks[n_], bottleneck, fmap, stats, "x0" if n_ == 0 else "")
    book.alloc("max pool's backward", d_a0=fmap(w0, 1))
    book.free("grad", "idx")
    book.alloc("stem: ReLU's backward", d_r0=fmap(w0, 1))
    book.free("d_a0", "a0")
    book.alloc("stem: BatchNorm's backward", d_c0=fmap(w0, 1), g_bn0=2 * w0 * e)
    book.free("d_r0", "c0", "s0")
    book.alloc("stem: convolution's dW (no dX: the image needs none)", g_c0=w0 * C_img * 49 * e)
    book.free("d_c0")
    book.phase = "optimizer"
    return book


def _params(arch, bns, blocks, bottleneck) -> int:
    """Parameters, counted from the layers themselves: convolutions (no biases), BatchNorms'
    γ and β, the classifier."""
    total = arch.width * arch.channels * 49 + 2 * sum(bns)
    for ci, width, co, _, _, shortcut in blocks:
        if bottleneck:
            total += ci * width + width * width * 9 + width * co
        else:
            total += ci * width * 9 + width * co * 9
        total += ci * co if shortcut else 0
    c_last = blocks[-1][2]
    return total + c_last * arch.classes + arch.classes


def _convs(ci, width, co, ki, ko, bottleneck):
    """(input channels, output channels, kernel side, input's stride exponent, output's) of
    the main branch's convolutions: the stride sits on a basic block's first 3×3, a
    bottleneck's second."""
    if bottleneck:
        return [(ci, width, 1, ki, ki), (width, width, 3, ki, ko), (width, co, 1, ko, ko)]
    return [(ci, width, 3, ki, ko), (width, co, 3, ko, ko)]


def _block_forward(book, i, ci, width, co, ki, ko, shortcut, bottleneck, fmap, stats):
    b = f"block {i + 1}"
    if shortcut:
        book.alloc(f"{b}: shortcut 1×1 convolution", **{f"sc{i}": fmap(co, ko)})
        book.alloc(f"{b}: shortcut BatchNorm", **{f"sa{i}": fmap(co, ko), f"ss{i}": stats(co)})
    for j, (_, c_o, _, _, kk) in enumerate(_convs(ci, width, co, ki, ko, bottleneck)):
        book.alloc(f"{b}: convolution {j + 1}", **{f"c{i}_{j}": fmap(c_o, kk)})
        a = {f"a{i}_{j}": fmap(c_o, kk), f"s{i}_{j}": stats(c_o)}
        book.alloc(f"{b}: BatchNorm {j + 1} (ReLU in place)", **a)
    if shortcut:
        book.free(f"sa{i}")  # added in place into the last BatchNorm's output, then let go


def _block_backward(book, i, block, bottleneck, fmap, stats, x0):
    """``x0``: the name of the block's input when nothing else saved it (the max pool's
    output, which the pool does not keep), freed after its last convolution's backward."""
    ci, width, co, ki, ko, shortcut = block
    b = f"block {i + 1}"
    convs = _convs(ci, width, co, ki, ko, bottleneck)
    last = len(convs) - 1
    book.alloc(f"{b}: the last ReLU's backward", d_out=fmap(co, ko))
    book.free("grad", f"a{i}_{last}")
    upstream = "d_out"  # shared by the main branch and the shortcut
    for j in reversed(range(len(convs))):
        c_i, c_o, side, k_in, kk = convs[j]
        if j < last:  # the ReLU after this BatchNorm (in place): its backward
            book.alloc(f"{b}: ReLU {j + 1}'s backward", d_r=fmap(c_o, kk))
            book.free(upstream, f"a{i}_{j}")
            upstream = "d_r"
        grads = {f"g_bn{i}_{j}": 2 * c_o * e}
        book.alloc(f"{b}: BatchNorm {j + 1}'s backward", d_c=fmap(c_o, kk), **grads)
        book.free(f"c{i}_{j}", f"s{i}_{j}", *([upstream] if upstream != "d_out" else []))
        grads = {f"g_c{i}_{j}": c_i * c_o * side**2 * e}
        book.alloc(f"{b}: convolution {j + 1}'s backward: dX, dW", d_in=fmap(c_i, k_in), **grads)
        book.free("d_c")
        if j > 0:
            book.live["d_x"] = book.live.pop("d_in")
            upstream = "d_x"
    if x0 and not shortcut:
        book.free(x0)
    if shortcut:
        grads = {f"g_sbn{i}": 2 * co * e}
        book.alloc(f"{b}: shortcut BatchNorm's backward", d_sc=fmap(co, ko), **grads)
        book.free(f"sc{i}", f"ss{i}", "d_out")
        grads = {f"g_sc{i}": ci * co * e}
        book.alloc(f"{b}: shortcut convolution's backward: dX, dW", d_s=fmap(ci, ki), **grads)
        book.free("d_sc", *([x0] if x0 else []))
        book.alloc(f"{b}: the input's two gradients summed", grad=fmap(ci, ki))
        book.free("d_in", "d_s")
    else:
        book.alloc(f"{b}: the input's two gradients summed", grad=fmap(ci, ki))
        book.free("d_in", "d_out")


def tracked(cfg, optimizer: str = "sgd"):
    """The same step measured by MemTracker under FakeTensorMode."""
    from complexo.peak import tracked_step

    return tracked_step(lambda: _build(cfg), optimizer)


def _build(cfg):
    """The model and its image batch as ``cnn.build`` makes them, in the current (fake)
    mode."""
    from complexo.analyses.cnn import build

    module, x = build(cfg, device=None)
    return module, (x,)


def all_live(cfg) -> int:
    """What ``vision_profile.memory`` added before the ledger: weights, their gradients and every
    saved activation, as if all were live at once (SGD keeps no state)."""
    from complexo.analyses.cnn import PRESETS, cost_model
    from complexo.cost import Kind, evaluate

    model, values = cost_model(PRESETS[cfg.model].block), cfg.values
    weights = evaluate(model.total(Kind.PARAMS), values) * values[e]
    return 2 * weights + evaluate(model.total(Kind.ACTIVATION), values)


def quantity(cfg):
    """The training step's peak as a quantity, MemTracker's reading beside it, and its note."""
    from complexo.peak import peak_quantity

    return peak_quantity(ledger(cfg), cfg.values, lambda: tracked(cfg), all_live(cfg))
