"""The counters' floor for `make bench`: what any script pays to count one MHSA block (n = 4096,
d = 1024, 16 heads, fp32, batch 1; `complexo mhsa --seq 4096 --dim 1024`'s config) with the
same two counters complexo runs, and nothing else: import torch and fvcore, build the block on
the meta device, FlopCounterMode over forward and backward, fvcore over the forward.

`complexo mhsa ... --json` against this script is the price of complexo's formulas, checks and
output on top of the counting (target ≤ 1.1×). With ``--memtracker`` it also runs the third
counter a checked answer runs since the training step's peak was added: MemTracker over one SGD
step of the same block under FakeTensorMode. It collects garbage and ends as complexo's
console script does: full collections made rare (five while torch imports, 0.3 s) and no
interpreter's teardown (0.65 s once torch._dynamo is imported), so that the ratio compares the
work and not who collects and frees their modules.
"""

import gc
import os
import sys

# as complexo.cli.collect_rarely: the oldest generation after 1000 young collections, not 10
gc.set_threshold(*gc.get_threshold()[:2], 1000)

import torch  # noqa: E402  (imported after the collector is set, as complexo's are)
import torch.nn.functional as F  # noqa: E402
from fvcore.nn import FlopCountAnalysis  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

B, N, D, H = 1, 4096, 1024, 16


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))

    def forward(self, x):
        def heads(t):
            return t.view(B, N, H, D // H).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        a = F.softmax(q @ k.transpose(-2, -1) / (D // H) ** 0.5, dim=-1)
        return self.o((a @ v).transpose(1, 2).reshape(B, N, D))


with torch.device("meta"):
    block = Attention()
    x = torch.randn(B, N, D, requires_grad=True)
with FlopCounterMode(display=False) as counter:
    block(x).sum().backward()
fv = FlopCountAnalysis(block, (x.detach(),))
fv.unsupported_ops_warnings(False)
fv.uncalled_modules_warnings(False)
print(counter.get_total_flops(), fv.total())
if "--memtracker" in sys.argv:
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    with FakeTensorMode():
        block = Attention()
        x = torch.randn(B, N, D, requires_grad=True)
        opt = torch.optim.SGD(block.parameters(), lr=1e-3)
        tracker = MemTracker()
        tracker.track_external(block, opt, x)
        with tracker:
            out = block(x)
            out.sum().backward()
            opt.step()
    print(tracker.get_tracker_snapshot("peak"))
sys.stdout.flush()
os._exit(0)
