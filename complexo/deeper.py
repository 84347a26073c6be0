"""MemTracker's record of a deep stack of identical layers read off its 2- and 3-layer copies
(GPT-3 175B's two sides: 37 s of MemTracker at 96 layers, 1.6 s at 2 and 3, equal to the byte).

The live bytes after each op are affine in the depth L, for an op outside the layers (the
embeddings, the head, the loss, their gradients) as for a layer's op: each moment holds a fixed
part and whole layers. So in the forward and the backward the copies' timelines are aligned op
by op (difflib: the 3-layer copy is the 2-layer one with one more layer's ops inserted) and
each op of the 2-layer copy is extrapolated along its partner,
b(L) = b(2) + (L − 2)·(b(3) − b(2)); the phase's high-water mark is the largest of them.
Extrapolating the phase's peak instead, p(2) + (L − 2)·(p(3) − p(2)), is wrong where the op
that peaks changes with depth: GPT-2's full fine-tuning step with full checkpointing peaks in
its backward at the loss's log_softmax up to 6 layers and at the head's tied gradient from 7
on, and read off that way its backward at 12 layers was 72,457,728 bytes short.

The ops are aligned by name and by the bytes each allocates or frees (a layer's two norms share
a name), under two alignments: each inserted run of ops as early and as late as the ops allow,
so that both the first and the last layer are read (a run of identical layers peaks at one of
its ends). The optimizer's step is one run of the same ops per parameter (casts, Adam's sqrt
and div), the embeddings' as a layer's, which no alignment by ops got right (LLaMA-7B's and
small LLaMAs' optimizer peaks came out wrong in tests/test_lora_peak_llama.py): its peak is
extrapolated as a whole, as before. The tests hold every phase to MemTracker at full depth
(GPT-2, LLaMA and ViT in each checkpointing mode: tests/test_lora_peak.py, test_peak.py,
test_checkpoint_lm.py, test_checkpoint_llama.py).
"""

from __future__ import annotations

import difflib

from complexo.peak import Tracked


def deeper(two: Tracked, three: Tracked, layers: int) -> Tracked:
    """The ``layers``-deep record from the 2- and 3-layer copies' (with their timelines): each
    phase's peak the largest of its aligned ops extrapolated, the step's peak the largest of
    those, and the peak by kind extrapolated (MemTracker's snapshot at the step's peak). No
    timeline: no step of that depth ran. ValueError where the copies ran more than one layer
    apart (the callers then track every layer)."""
    a, b = _by_phase(two.timeline), _by_phase(three.timeline)
    if list(a) != list(b):
        raise ValueError(f"the copies' phases differ: {list(a)} and {list(b)}")
    old, new = two.phase_peaks(), three.phase_peaks()
    phases = {
        phase: _peak(a[phase], b[phase], layers)
        if phase != "optimizer"
        else _at(layers, old[phase], new[phase])
        for phase in b
    }
    phase = max(phases, key=phases.get)
    kinds = {k: _at(layers, two.by_kind.get(k, 0), v) for k, v in three.by_kind.items()}
    return Tracked(phases[phase], phase, kinds, [], depth=(2, 3), peaks=phases)


def _by_phase(timeline) -> dict[str, list[tuple[str, int]]]:
    """A timeline's (op, live bytes) per phase, in order."""
    out: dict[str, list[tuple[str, int]]] = {}
    for phase, op, nbytes in timeline:
        out.setdefault(phase, []).append((op, nbytes))
    return out


def _peak(two: list[tuple[str, int]], three: list[tuple[str, int]], layers: int) -> int:
    """The largest op of a phase at ``layers``: each op of the 2-layer copy extrapolated along
    its partner in the 3-layer copy, under the two alignments that put each inserted run of
    ops as early and as late as the ops allow, so that both the first layer's and the last
    layer's moments are read (a run of identical layers peaks at one of its ends)."""
    x, y = _tokens(two), _tokens(three)
    steps = _steps(x, y)
    found = []
    for push in (-1, 1):  # the inserted layer first, then last: both ends of the run of layers
        shift = _shifts(_pushed(steps, x, y, push), len(x))
        found += [_at(layers, two[i][1], three[i + shift[i]][1]) for i in range(len(x))]
    return max(found)


def _at(layers: int, two: int, three: int) -> int:
    """A count affine in the depth, at ``layers``, from its values at 2 and 3."""
    return two + (layers - 2) * (three - two)


def _tokens(ops: list[tuple[str, int]]) -> list[str]:
    """Each op by its name and what it allocated or freed: the same op of the same layer in
    both copies (a name alone is shared by a layer's two norms, or its q and k products)."""
    out, last = [], None
    for op, nbytes in ops:
        out.append(f"{op} {nbytes - last if last is not None else 0:+d}")
        last = nbytes
    return out


def _steps(x: list[str], y: list[str]) -> list[tuple[int, int]]:
    """Where the 3-layer copy inserts ops into the 2-layer copy's: (index in x, how many)."""
    matcher = difflib.SequenceMatcher(None, x, y, autojunk=False)
    steps = []
    for tag, i1, _, j1, j2 in matcher.get_opcodes():
        if tag == "insert":
            steps.append((i1, j2 - j1))
        elif tag != "equal":  # not layers' ops inserted: the copies ran differently
            raise ValueError(f"the copies' ops differ beyond whole layers: {tag} at op {i1}")
    return steps


def _pushed(steps, x: list[str], y: list[str], push: int) -> list[tuple[int, int]]:
    """``steps`` each moved as far as it goes (push −1: earlier, 1: later) while every op keeps
    a partner of its own (the same name, the same bytes allocated or freed)."""
    out = list(steps)
    for k in range(len(out)) if push < 0 else reversed(range(len(out))):
        at, size = out[k]
        before = sum(n for _, n in out[:k])  # the shift of the ops just before this step
        if push < 0:
            low = out[k - 1][0] if k else 0
            while at > low and x[at - 1] == y[at - 1 + before + size]:
                at -= 1
        else:
            high = out[k + 1][0] if k + 1 < len(out) else len(x)
            while at < high and x[at] == y[at + before]:
                at += 1
        out[k] = (at, size)
    return out


def _shifts(steps, n: int) -> list[int]:
    """Each op's offset into the 3-layer copy under ``steps``."""
    shift, total, k = [], 0, 0
    for i in range(n):
        while k < len(steps) and steps[k][0] <= i:
            total += steps[k][1]
            k += 1
        shift.append(total)
    return shift
