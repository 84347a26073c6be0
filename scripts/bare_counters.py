"""The counters' floor for `make bench`: what any script pays to count one MHSA block (n = 4096,
d = 1024, 16 heads, fp32, batch 1; `complexo mhsa --seq 4096 --dim 1024`'s config) with the
same two counters complexo runs, and nothing else: import torch and fvcore, build the block on
the meta device, FlopCounterMode over forward and backward, fvcore over the forward.

`complexo mhsa ... --json` against this script is the price of complexo's formulas, checks and
output on top of the counting (target ≤ 1.1×). It ends as complexo's console script does,
without the interpreter's teardown (0.65 s once torch._dynamo is imported), so that the ratio
compares the work and not who frees their modules.
"""

import os
import sys

import torch
import torch.nn.functional as F
from fvcore.nn import FlopCountAnalysis
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

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
sys.stdout.flush()
os._exit(0)
