"""The measurement adapters themselves, on cases small enough to count by hand."""

import os

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from complexo.measure import count_fvcore, measure_torch, param_counts, quiet_profiler


def linear(device="meta"):
    with torch.device(device):
        return torch.nn.Linear(6, 5), torch.randn(4, 6, requires_grad=True)


def test_torch_counts_match_stock_flopcountermode():
    layer, x = linear()
    stock = FlopCounterMode(display=False)
    with stock:
        layer(x).sum().backward()
    run = measure_torch(lambda: layer(x), list(layer.parameters()))
    # forward 2·4·6·5 = 240; backward dX and dW, 2·240 = 480
    assert (run.forward.total, run.backward.total) == (240, 480)
    assert run.forward.total + run.backward.total == stock.get_total_flops()
    assert run.forward.by_op == {"aten.addmm": 240}
    assert run.forward.uncounted_ops <= {"aten.t", "aten.view"}  # layout only, no FLOPs


def test_fvcore_macs_are_doubled():
    layer, x = linear()
    fv = count_fvcore(layer, (x.detach(),))
    assert fv.counter == "fvcore" and fv.total == 240  # 4·6·5 = 120 MACs
    assert param_counts(layer) == {"torch": 35, "fvcore": 35}  # 6·5 + 5


def test_saved_bytes_count_each_storage_once_and_skip_parameters():
    with torch.device("meta"):
        x = torch.randn(8, 16, requires_grad=True)
        w = torch.nn.Parameter(torch.randn(16, 16))

    def forward():
        y = x @ w  # saves x (512 B) and w (a parameter: not counted)
        z = y.view(4, 32).sin()  # saves the view of y: y's storage, 512 B
        return z * y.view(4, 32)  # saves y's storage twice more, and the sin output (512 B)

    run = measure_torch(forward, [w])
    assert run.saved_bytes == 3 * 8 * 16 * 4


def test_uncounted_ops_name_what_flopcountermode_has_no_formula_for():
    with torch.device("meta"):
        x = torch.randn(3, 7, requires_grad=True)
    run = measure_torch(lambda: torch.softmax(x, dim=-1), [])
    assert run.forward.total == 0 and "aten._softmax" in run.forward.uncounted_ops
    assert "aten._softmax_backward_data" in run.backward.uncounted_ops
    assert run.outputs == (("aten._softmax", (3, 7), 3 * 7 * 4),)


def test_quiet_profiler_drops_kinetos_start_stop_lines_and_passes_on_the_rest(capfd):
    with quiet_profiler():
        os.write(2, b"USDT:2026-11-24 00:43:45 1:1 SyncActivityProfilerHandler.cpp:52] start\n")
        os.write(2, b"ERROR:2026-11-24 00:43:45 1:1 CuptiActivityApi.cpp:1] no CUPTI\n")
        os.write(2, b"STAGE:2026-11-24 00:43:45 1:1 SyncActivityProfilerHandler.cpp:60] done\n")
    assert (
        capfd.readouterr().err == "ERROR:2026-11-24 00:43:45 1:1 CuptiActivityApi.cpp:1] no CUPTI\n"
    )
    with pytest.raises(RuntimeError), quiet_profiler():
        raise RuntimeError("fd 2 comes back on the way out")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
