"""complexo.deeper on timelines written by hand: a deep stack read off its 2- and 3-layer copies
op by op. MemTracker at full depth against the read-off is in test_lora_peak.py, test_peak.py,
test_checkpoint_llama.py and (slow) test_checkpoint_lm.py."""

import pytest

from complexo.deeper import deeper
from complexo.peak import Tracked


def _tracked(timeline):
    best = max(b for _, _, b in timeline)
    phase = next(p for p, _, b in timeline if b == best)
    return Tracked(best, phase, {}, timeline)


def _backward(layers: int):
    """Weights of 10 bytes a layer given; the loss's op allocates 100 (10·L + 100) and its
    logits go (−100); each layer's gradient +30; the head's gradient +5: 10·L + 30·L + 5. At
    L = 2 and 3 the loss's op peaks (120, 130 against 85, 125), from L = 4 the head's."""
    timeline = [("backward", "given", 10 * layers), ("backward", "loss", 10 * layers + 100)]
    timeline.append(("backward", "(freed)", 10 * layers))
    timeline += [("backward", "grad", 10 * layers + 30 * j) for j in range(1, layers + 1)]
    timeline.append(("backward", "head grad", 40 * layers + 5))
    return _tracked(timeline)


def test_the_op_that_peaks_may_change_with_depth():
    read = deeper(_backward(2), _backward(3), 12)
    # each op along its own line: the head's 85 + 40·10 = 485 (= 40·12 + 5); the loss's
    # 120 + 10·10 = 220, which is what extrapolating the phase's peak said (120 → 130 → 220)
    assert read.peaks["backward"] == 485
    assert (read.bytes, read.phase) == (485, "backward")


def _layers(layers: int, alloc: int, free: int):
    """Weights of 2 bytes a layer given, an embedding (+50), then per layer j an op allocating
    ``alloc`` and one freeing ``free``: layer j's first op holds
    2·L + 50 + (alloc − free)·(j − 1) + alloc."""
    timeline = [("forward", "given", 2 * layers), ("forward", "embed", 2 * layers + 50)]
    for j in range(1, layers + 1):
        held = 2 * layers + 50 + (alloc - free) * (j - 1)
        timeline += [("forward", "alloc", held + alloc), ("forward", "free", held + alloc - free)]
    return _tracked(timeline)


@pytest.mark.parametrize(
    ("alloc", "free", "peak"),
    [
        (15, 10, 2 * 12 + 50 + 5 * 11 + 15),  # growing: the last layer's first op, 144
        (10, 15, 2 * 12 + 50 + 10),  # shrinking: the first layer's first op, 84
    ],
)
def test_both_ends_of_a_run_of_layers_are_read(alloc, free, peak):
    """The 3-layer copy's extra layer could be any of its three: read with it first, the
    2-layer copy's layers are the stack's last two; read with it last, its first two. Shrinking,
    only the latter finds the first layer (64 at L = 2, 66 at 3, 84 at 12); the former's lines
    reach 74 at most (the embedding's, 54 → 56 → 74)."""
    assert deeper(_layers(2, alloc, free), _layers(3, alloc, free), 12).peaks["forward"] == peak


def test_copies_that_ran_different_ops_are_refused():
    two = _tracked([("forward", "a", 1), ("forward", "b", 2)])
    three = _tracked([("forward", "a", 1), ("forward", "c", 3)])
    with pytest.raises(ValueError, match="beyond whole layers"):
        deeper(two, three, 8)
