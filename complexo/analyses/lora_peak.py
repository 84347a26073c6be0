"""LoRA's and full fine-tuning's training steps as they really peak (:mod:`complexo.peak`):
ledgers written by reading ``blocks/lora.py``, ``blocks/transformer.py`` and autograd's formulas
line by line, for one linear layer and for a GPT-2-style model (learned positions, LayerNorm,
biases, GELU, tied head; attention through SDPA, grouped-query too: k and v repeated to h
heads, their gradients summed back and copied contiguous); a LLaMA-style model's layers, norms,
rotary positions and untied head are :mod:`complexo.analyses.lora_peak_llama`'s, with the same
pieces, the same deep-model lump and the same optimizer phase.

Each tensor is live while something holds it: a Python name (until its function returns), a
backward node that saved it (until that node has run), or a gradient buffer (autograd sums a
tensor's gradients as they arrive, out of place). What saves what follows who needs a gradient,
as :mod:`complexo.analyses.lora_cost` models it: a frozen matrix keeps no input, its adapters
keep theirs (x for A, x·Aᵀ for B), a LayerNorm keeps its input and statistics only where a
gradient passes it, SDPA keeps q, k, v, its output and fp32 log-sum-exp only where one of them
needs a gradient. The backward runs each layer in autograd's order (the branch before the
residual, the latest-made node first: an adapter's path before its frozen base, v before k
before q), each linear's gradients in the kernel's order (addmm: dX, dW, db; mm: dW, dX).

Symbols: X = B·n·d·e, F = B·n·f·e, Z = B·n·V·e (the logits), S = 2·B·n·e (a LayerNorm's mean
and 1/std, in the input's dtype on the CPU), L' = 4·B·h·n (SDPA's fp32 log-sum-exp). The step
is steady (:func:`complexo.peak.tracked_step`): weights, token ids and targets, the optimizer's
moments (2·4 bytes per trained parameter, and a 4-byte step count per trained tensor on the
CPU) and, in mixed precision, the fp32 master weights are given; the loss is held through the
backward. The optimizer's phase: in mixed precision each 16-bit gradient is cast up to fp32
(freed as its copy is made), then Adam's per-tensor step holds √v and √v / c₂ of the tensor it
steps (two temporaries of its size, in the masters' dtype), SGD nothing.

Activation checkpointing (``cfg.checkpoint``, :mod:`complexo.analyses.lora_ckpt`): ``full`` writes
each block's forward with no backward node saving anything (``Book.saving`` off: only Python's
names and the checkpoint's hold on the block's input keep tensors), and before the block's
backward its forward again, stopped once fc_out's input is saved (:class:`Linear`'s ``stop``),
each recomputed input of a linear layer let go once unpacked for dW, before db; ``selective``
keeps q, k, v by the core's checkpoint and runs SDPA again (the k, v repeats too) just before its
backward. Exact against MemTracker in each mode (tests/test_checkpoint_lm.py).

Deep models: every layer after the first is the same, and each moment of a middle layer is
affine in its index (a forward layer adds what it keeps; a backward one frees it and adds its
gradients), so its largest is at the first or the last middle layer: layers 1, 2, L − 1 and L
are written out, layers 3 .. L − 2 are one lump of (L − 4) layers' bytes. GPT-3's 96 layers
cost what 5 do.
"""

from __future__ import annotations

from complexo.analyses import lora_peak_llama as llama
from complexo.analyses.lora_peak_ops import Book, Linear, Norm
from complexo.conventions import FP32_BYTES
from complexo.cost import Kind
from complexo.peak import Ledger
from complexo.symbols import B, L, P, V, d, d_in, d_out, e, f, h, n, r

INT64_BYTES = 8
UNROLLED = 5  # up to this many layers, every one is written out
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _layer(book: Book, cfg, i: int, x: str, x_grad: bool, full: bool, output: str = ""):
    """One pre-norm block's forward: returns (its output, whether it needs a gradient, the
    backward to run later). ``output``: the block is a checkpoint's rerun (``book.rerun``),
    stopped once fc_out's input is saved; its output is the forward's, ``output``."""
    spec, targets = cfg.spec, () if full else cfg.targets
    selective, since = getattr(cfg, "checkpoint", "none") == "selective", book.count
    gqa = bool(spec.kv_heads) and spec.kv_heads != spec.heads
    kv = spec.kv_heads * d / h if gqa else d  # k's and v's width: G heads of d/h

    def linear(name, i_, o_):
        from complexo.analyses.lora_cost import _adapted

        return Linear(
            book,
            f"layer {i} {name}",
            i_,
            o_,
            bias=True,
            trained=full,
            adapted=_adapted(name, targets),
        )

    ln1, ln2 = Norm(book, f"layer {i} norm1", full), Norm(book, f"layer {i} norm2", full)
    q, k, v, o = (linear(name, d, w) for name, w in zip(PROJECTIONS, (d, kv, kv, d), strict=True))
    if gqa and spec.kv_heads > 1:
        k.copy_grad = v.copy_grad = True
    fc_in, fc_out = linear("fc_in", d, f), linear("fc_out", f, d)
    h1, h1_grad = ln1.forward(x, x_grad)
    qkv = [m.forward(h1, h1_grad) for m in (q, k, v)]
    att = any(grad for _, grad in qkv)
    shared = [qkv[0][0]]  # SDPA's inputs: q, and k and v repeated to h heads (copies) or not
    for label, (name, _) in zip("kv", qkv[1:], strict=True):
        repeat = {"kh": B * n * d * e}
        shared += book.make(f"layer {i}: {label} repeated to h heads", **repeat) if gqa else [name]
    y, lse = book.make(f"layer {i}: SDPA", y=B * n * d * e, lse=FP32_BYTES * B * h * n)
    if selective and att:  # the core under a checkpoint: it keeps q, k, v; SDPA nothing
        for name, _ in qkv:
            book.hold(name, f"checkpoint {i}")
    if att and book.saving and not selective:
        for name in (*shared, y, lse):
            book.hold(name, f"layer {i} sdpa")
    book.drop(lse)
    for name in shared[1:] if gqa else []:  # the copies: SDPA's arguments, until it returns
        book.drop(name)
    out, o_grad = o.forward(y, att)
    for name in (*(t for t, _ in qkv), y, h1):  # attention's locals, until it returns
        book.drop(name)
    (x1,) = book.make(f"layer {i}: residual", x1=B * n * d * e)
    book.drop(out)
    x1_grad = x_grad or o_grad
    h2, h2_grad = ln2.forward(x1, x1_grad)
    a, a_grad = fc_in.forward(h2, h2_grad)
    (gelu,) = book.make(f"layer {i}: GELU", gelu=B * n * f * e)
    if a_grad:
        book.hold(a, f"layer {i} gelu")
    book.drop(a)
    m, m_grad = fc_out.forward(gelu, a_grad, stop=bool(output))
    x2 = book.block_end(i, x, x1, m, (gelu, h2), output, since)

    def backward():
        _residual(book, x2, x1, x1_grad, m, m_grad)
        if m_grad:
            fc_out.backward()
            if a_grad:
                ga = book.take(gelu)
                (dg,) = book.make(f"layer {i}: GELU's backward", dg=B * n * f * e)
                book.drop(ga, f"grad:{gelu}")
                book.drop(a, f"layer {i} gelu")
                book.contribute(a, dg, f"layer {i} gelu")
                fc_in.backward()
            if h2_grad:
                ln2.backward()
        if not x1_grad:
            return
        _residual(book, x1, x, x_grad, out, o_grad)
        if o_grad:
            o.backward()
        if att:
            gy = book.take(y)
            saved, saved_y, saved_lse = shared, y, lse
            if selective:  # out_proj let go of y; the core runs again for SDPA's backward
                saved, saved_y, saved_lse = _core_again(book, i, qkv, gqa)
            names = book.make(
                f"layer {i}: SDPA's backward: dQ, dK, dV",
                dq=B * n * d * e,
                dk=B * n * d * e,
                dv=B * n * d * e,
            )
            book.drop(gy, f"grad:{y}")
            for name in saved:
                book.drop(name, f"layer {i} sdpa")
            book.drop(saved_y, f"layer {i} sdpa")
            book.drop(saved_lse, f"layer {i} sdpa")
            for name, _ in qkv if selective else ():
                book.drop(name, f"checkpoint {i}")
            for (_, grad), dname in zip(qkv, names, strict=True):
                if not grad:  # a frozen projection of an input that needs no gradient
                    book.drop(dname)
            if gqa:  # the repeats' backward (v's first): each head group's gradients summed
                for (_, grad), dname in zip(qkv[:0:-1], names[:0:-1], strict=True):
                    if grad:
                        (summed,) = book.make(
                            f"layer {i}: {dname[1]}'s repeats summed", dkv=B * n * kv * e
                        )
                        book.drop(dname)
                        names[names.index(dname)] = summed
            for (name, grad), dname in zip(qkv, names, strict=True):
                if grad:
                    book.contribute(name, dname, f"layer {i} sdpa")
            for m_, (_, grad) in zip((v, k, q), reversed(qkv), strict=True):
                if grad:
                    m_.backward()
            if h1_grad:
                ln1.backward()

    return x2, x1_grad or m_grad, backward


def _core_again(book: Book, i: int, qkv, gqa: bool):
    """Selective: the attention core run again from the q, k, v its checkpoint kept (k and v
    repeated to h heads first, with grouped-query attention), stopped once SDPA's output and
    log-sum-exp are saved: (what SDPA saved, its output, the log-sum-exp)."""
    shared = [qkv[0][0]]
    for label, (name, _) in zip("kv", qkv[1:], strict=True):
        again = {"kh": B * n * d * e}
        shared += book.make(f"layer {i}: {label} repeated again", **again) if gqa else [name]
    y, lse = book.make(f"layer {i}: SDPA again", y=B * n * d * e, lse=FP32_BYTES * B * h * n)
    for name in (*shared, y, lse):
        book.hold(name, f"layer {i} sdpa")
    for name in (*shared[1:], y, lse) if gqa else (y, lse):
        book.drop(name)
    return shared, y, lse


def _checkpointed(book: Book, cfg, i: int, x: str, x_grad: bool, full: bool):
    """Block i under torch.utils.checkpoint (full): its forward saves nothing but its input
    (the checkpoint's), every tensor going when Python lets go of it; its backward runs the
    block again, stopped once fc_out's input is saved, then the block's backward, each
    recomputed input let go once unpacked; the input goes with the checkpoint."""
    book.hold(x, f"checkpoint {i}")
    book.saving = False
    out, out_grad, _ = _layer(book, cfg, i, x, x_grad, full)
    book.saving = True

    def backward():
        book.rerun = True
        _, _, inner = _layer(book, cfg, i, x, x_grad, full, output=out)
        inner()
        book.rerun = False
        book.drop(x, f"checkpoint {i}")

    return out, out_grad, backward


def _residual(book: Book, out: str, x: str, x_grad: bool, branch: str, branch_grad: bool):
    """``out = x + branch``'s backward: its gradient handed to both, no copy."""
    g = book.take(out)
    for name, grad in ((x, x_grad), (branch, branch_grad)):
        if grad:
            book.hold(g, "py")
            book.contribute(name, g, "residual")
    book.drop(g, f"grad:{out}")


def ledger(cfg, side: str) -> Ledger:
    """The step's allocations and frees for ``cfg`` (a lora Config) and ``side`` (full or
    lora), as sympy over its symbols."""
    from complexo.analyses.lora_cost import cost_model

    full = side == "full"
    model = cost_model(cfg, side)
    trained = model.total(Kind.PARAMS, tag="trainable")
    book = Book(**_given(cfg, side, model, trained))
    if cfg.single_layer:
        _single_layer(book, full)
    elif cfg.arch == "llama":
        llama.model(book, cfg, full)
    else:
        _model(book, cfg, full)
    _optimizer(book, cfg, side, trained)
    return book


def _given(cfg, side: str, model, trained) -> dict:
    """Weights, the inputs, and what earlier steps left: the masters and Adam's moments."""
    from complexo.analyses.lora_cost import OPTIMIZER_STATES

    given = {"weights": model.total(Kind.PARAMS) * e}
    if cfg.single_layer:
        given["x"] = B * n * d_in * e
    else:
        given["ids and targets"] = 2 * INT64_BYTES * B * n
    if cfg.master_fp32:
        given["fp32 masters"] = FP32_BYTES * trained
    states = OPTIMIZER_STATES[cfg.optimizer]
    if states:
        given["moments"] = states * FP32_BYTES * trained
        head, layer, tail = trained_tensors(cfg, side)
        given["step counts"] = FP32_BYTES * (len(head) + len(layer) * L + len(tail))
    return given


def _single_layer(book: Book, full: bool) -> None:
    layer = Linear(book, "layer", d_in, d_out, bias=True, trained=full, adapted=not full)
    book.holders["x"] = {"given"}
    out, _ = layer.forward("x", True)
    (total,) = book.make("out.sum()", total=e)
    (seed,) = book.make("the backward's seed gradient", seed=e)
    book.phase = "backward"
    book.hold(seed, f"grad:{out}")  # sum's backward: the seed expanded, a view
    book.grads[out] = seed
    layer.backward()  # x's summed gradient becomes x.grad, kept
    book.drop(total)
    book.drop(seed)


def _model(book: Book, cfg, full: bool) -> None:
    X = B * n * d * e
    tok, pid = book.make("token embeddings", tok=X), book.make("position ids", pid=8 * n)
    (tok,), (pid,) = tok, pid
    (pe,) = book.make("position embeddings", pe=n * d * e)
    if full:
        book.hold(pid, "wpe")
    book.drop(pid)
    (x,) = book.make("embeddings summed", x0=X)
    x0 = x
    book.drop(tok)
    book.drop(pe)
    block = _checkpointed if getattr(cfg, "checkpoint", "none") == "full" else _layer
    x, stack = stack_forward(book, cfg, x, full, block)
    norm_f = Norm(book, "final norm", full)
    hf, _ = norm_f.forward(x, True)
    (logits,) = book.make("lm_head's logits", logits=B * n * V * e)
    if full:
        book.hold(hf, "lm_head")
    book.drop(hf)
    (lp,) = book.make("cross-entropy: log_softmax", lp=B * n * V * e)
    loss, tw = book.make("cross-entropy: nll", loss=e, tw=e)
    book.drop(logits)  # the forward's locals, until it returns
    book.drop(x)
    (total,) = book.make("out.sum()", total=e)
    (seed,) = book.make("the backward's seed gradient", seed=e)
    book.phase = "backward"
    (dlp,) = book.make("nll's backward", dlp=B * n * V * e)
    book.drop(seed)
    (dz,) = book.make("log_softmax's backward", dz=B * n * V * e)
    book.drop(dlp)
    book.drop(lp)
    head = book.make("lm_head's backward: dW", g_head=V * d * e) if full else []
    (dx,) = book.make("lm_head's backward: dX", dx=X)
    book.drop(dz)
    if full:
        book.drop(hf, "lm_head")
    book.contribute(hf, dx, "lm_head")
    norm_f.backward()
    stack_backward(book, stack)
    if full:
        _embeddings_backward(book, x0, pid, *head)
    book.drop(total)
    book.drop(tw)
    del loss  # the step's output, held


def stack_forward(book: Book, cfg, x: str, full: bool, block, *extra):
    """The layers' forwards in order, ``block(book, cfg, i, x, x_grad, full, *extra)`` each
    (GPT-2's or LLaMA's, plain or under a checkpoint); past :data:`UNROLLED` layers, layers
    3 .. L − 2 as one lump (:func:`_lump_forward`). The last output, and what
    :func:`stack_backward` needs."""
    x_grad, layers, backwards = full, cfg.layers, []
    written = range(1, layers + 1) if layers <= UNROLLED else (1, 2, layers - 1, layers)
    lump, kept = None, 0
    for i in written:
        if i == layers - 1 and layers > UNROLLED:  # layers 3 .. L − 2: one lump
            lump = _lump_forward(book, x, kept)
            x = lump[1]
        before = book.total()
        x, x_grad, backward = block(book, cfg, i, x, x_grad, full, *extra)
        kept = book.total() - before  # what a layer adds: its output and what it saved
        backwards.append((i, backward))
    return x, (layers, backwards, lump, kept)


def stack_backward(book: Book, stack) -> None:
    """The layers' backwards, last first, the lump's (:func:`_lump_backward`) in its place."""
    layers, backwards, lump, kept = stack
    for i, backward in reversed(backwards):
        before = book.total()
        backward()
        if i == layers - 1 and lump is not None:
            _lump_backward(book, lump, book.total() - before + kept)


def _lump_forward(book: Book, x: str, kept):
    """Layers 3 .. L − 2 at once: (L − 4) times what a middle layer keeps, its output apart."""
    X = B * n * d * e
    book.hold(x, "lump")
    book.drop(x)
    lump, out = book.make("layers 3 .. L − 2", lump=(L - 4) * kept - X, x_lump=X)
    return x, out, lump


def _lump_backward(book: Book, lump, grads) -> None:
    """Their backward at once: what they kept freed, (L − 4) times a layer's gradients left."""
    first_in, out, kept = lump
    g = book.take(out)
    book.hold(g, f"grad:{first_in}")
    book.drop(g, f"grad:{out}")
    book.grads[first_in] = g
    book.drop(kept)
    book.drop(first_in, "lump")
    book.make("layers 3 .. L − 2: their backward", g_lump=(L - 4) * grads)


def _embeddings_backward(book: Book, x0: str, pid: str, head: str) -> None:
    """x0 = wte(ids) + wpe(positions): the positions' gradient summed over the batch (a new
    (n, d) tensor, even when B = 1), scattered into its (P, d) table, then the tokens' into
    (V, d), which AccumulateGrad adds to the head's dW (the two share one weight), out of
    place."""
    g = book.take(x0)
    (summed,) = book.make("wpe's gradient summed over the batch", g_pos_rows=n * d * e)
    book.make("wpe's backward", g_wpe=P * d * e)
    book.drop(summed)
    book.drop(pid, "wpe")
    (wte,) = book.make("wte's backward", g_wte=V * d * e)
    book.drop(g, f"grad:{x0}")
    book.make("wte's gradient added to the head's", g_tied=V * d * e)
    book.drop(wte)
    book.drop(head)


def trained_tensors(cfg, side: str) -> tuple[list, list, list]:
    """The trained parameters' sizes (elements) in ``module.parameters()`` order: those before
    the layers, one layer's (repeated L times), those after."""
    from complexo.analyses.lora_cost import _adapted, _symbolic_matrices

    if cfg.single_layer:
        return ([d_in * d_out, d_out] if side == "full" else [r * d_in, d_out * r]), [], []
    if cfg.arch == "llama":
        return llama.trained_tensors(cfg, side)
    matrices = _symbolic_matrices(cfg.spec)
    if side == "lora":
        adapted = [(i, o) for name, i, o in matrices if _adapted(name, cfg.targets)]
        return [], [size for i, o in adapted for size in (r * i, o * r)], []
    layer = [d, d, d, d]  # norm1's weight and bias, then norm2's
    for _, i, o in matrices:
        layer += [i * o, o]
    return [V * d, P * d], layer, [d, d]


def _optimizer(book: Book, cfg, side: str, trained) -> None:
    """Mixed precision: each 16-bit gradient cast up to fp32, then let go; Adam's step over
    each tensor holds √v and √v / c₂ of its size, and the previous tensor's denominator (the
    loop's local ``denom``, until it is assigned again); SGD allocates nothing."""
    book.phase = "optimizer"
    head, layer, tail = trained_tensors(cfg, side)
    if cfg.master_fp32:
        _cast_up(book, head, layer, tail, trained)
    if cfg.optimizer in ("adam", "adamw"):
        each = FP32_BYTES if cfg.master_fp32 else e
        sizes = [*head, *layer * min(cfg.layers or 1, 2), *tail]  # every neighbouring pair
        for k, (before, size) in enumerate(dict.fromkeys(zip([0, *sizes], sizes, strict=False))):
            book.alloc(
                f"Adam's step: the last denominator, √v and √v / c₂ of a {_shape(size)} tensor",
                **{f"adam{k}": each * (before + 2 * size)},
            )
            book.free(f"adam{k}")


def _shape(size) -> str:
    """A parameter's elements as a label: ``V·d``."""
    return str(size).replace("*", "·")


def _cast_up(book: Book, head, layer, tail, trained) -> None:
    """``master.grad = p.grad.float(); p.grad = None`` tensor by tensor: at the k-th, the fp32
    copies of tensors 1 .. k and the 16-bit gradients of k .. the last are live. Going from a
    layer to the next adds (4 − e) bytes per element of a layer, so the last layer's moments
    stand for all the layers'."""
    grads = [name for name in book.live if name.startswith("g_")]
    book.free(*grads)
    sixteen, done = trained * e, 0  # 16-bit gradients still live; fp32 ones made
    layers = L if layer else 0
    order = [(size, 0) for size in head]
    order += [(size, 1) for size in layer]
    order += [(size, 2) for size in tail]
    for k, (size, part) in enumerate(order):
        skipped = (layers - 1) * sum(layer) if part == 1 and k == len(head) else 0
        done, sixteen = done + skipped, sixteen - skipped * e
        book.alloc(
            f"a gradient cast up to fp32 ({_shape(size)})",
            **{f"cast{k}": FP32_BYTES * (done + size) + sixteen},
        )
        book.free(f"cast{k}")
        done, sixteen = done + size, sixteen - size * e
    book.alloc("every gradient cast up to fp32", master_grads=FP32_BYTES * trained)


def tracked(cfg, side: str):
    """The same step measured by MemTracker under FakeTensorMode
    (:func:`complexo.peak.tracked_step`), mixed precision as ``lora``'s profile runs it. A
    model deeper than three layers is tracked, as it is counted, on its 2- and 3-layer copies
    (:func:`complexo.deeper.deeper`); ``--full-depth`` tracks every layer."""
    from dataclasses import replace

    from complexo.analyses.lora_measure import build, extrapolated
    from complexo.deeper import deeper
    from complexo.peak import tracked_step

    def run(c):
        return tracked_step(
            lambda: build(c, side, device=None), c.optimizer, master_fp32=c.master_fp32
        )

    if not extrapolated(cfg):
        return run(cfg)
    try:
        return deeper(run(replace(cfg, layers=2)), run(replace(cfg, layers=3)), cfg.layers)
    except ValueError:  # the copies ran more than one layer apart: every layer, then
        return run(cfg)


def all_live(cfg, side: str) -> int:
    """What lora's memory said before the ledger: weights, gradients, optimizer state (and
    masters) and every saved activation, as if all were live at once."""
    from complexo.analyses.lora_cost import cost_model
    from complexo.cost import evaluate

    model = cost_model(cfg, side)
    return evaluate(model.total((Kind.MEMORY, Kind.ACTIVATION)), cfg.values)


def quantity(cfg, side: str):
    """The training step's peak as a quantity, MemTracker's reading beside it, and its note."""
    from complexo.peak import peak_quantity

    return peak_quantity(
        ledger(cfg, side), cfg.values, lambda: tracked(cfg, side), all_live(cfg, side)
    )
