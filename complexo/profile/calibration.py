"""``complexo calibrate``: the present device's ceilings measured (the best FLOP/s of a large
matrix product and of a 3×3 convolution per dtype, a large copy's bandwidth) and saved under
profiles/<device>/calibration.json for the roofline of later runs."""

from __future__ import annotations

import datetime
import json
import statistics
from pathlib import Path

from complexo import progress
from complexo.errors import ComplexoError
from complexo.profile.core import (
    PROFILES,
    calibration_path,
    device_name,
    refuse_if_too_big,
    resolve_device,
    timer,
)

# The 3×3 convolutions calibration tries per device, (batch, channels, side), smallest first: it
# takes the first whose call lasts CONV_CALL_S, so a dtype without a fast path stays quick.
CONV_SHAPES = {
    "cpu": ((1, 32, 32), (1, 64, 64), (1, 128, 64), (1, 256, 64)),
    "cuda": ((8, 256, 64), (32, 512, 64)),
}


CONV_CALL_S = 0.02

# A call this long is timed once: a kernel without a fast path for its dtype here (a CPU's fp16
# convolution: 0.3 s a call at (1, 64, 64), where fp32's takes 6 ms), far from any ceiling, and
# seven calls of it were most of a CPU's calibration (2.2 of 2.6 s)
SLOW_CALL_S = 0.25


def _rate(run, flops: int, clock, first: float | None = None, repeat: int = 5) -> float:
    """FLOP/s of ``run``: the median of ``repeat`` timed calls after an untimed one; a call that
    already took SLOW_CALL_S or more (a dtype without a fast path here) is measured once."""
    first = clock(run) if first is None else first
    if first >= SLOW_CALL_S:
        return flops / first
    run()
    return flops / statistics.median(clock(run) for _ in range(repeat))


MAX_SIDE = 65_536  # a side-65536 fp32 product: 16 GiB per operand, minutes on a GPU


def calibrate(device: str | None = None, *, size: int | None = None, root: Path = PROFILES) -> dict:
    """Measure the present device's ceilings and save them for later runs: per dtype, the best
    FLOP/s of a large matrix product and of a 3×3 convolution (on a CPU the two go through
    different libraries, and the convolution can run twice as fast); a large device-to-device
    copy for the bandwidth."""
    import torch

    if size is not None and not 1 <= size <= MAX_SIDE:
        raise ComplexoError(f"--size is a matrix side from 1 to {MAX_SIDE:,}, got {size}")
    device = resolve_device(device)
    clock = timer(device)
    n = size or (8192 if device == "cuda" else 1024)
    refuse_if_too_big(
        2 * n * n * 4, device, f"calibrate --size {n}", f"--size {max(1, n // 4)} or less"
    )
    measured: dict[str, dict[str, float]] = {"matmul": {}, "convolution": {}}
    conv_shape = {}
    dtypes = (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16))
    with progress.task(f"calibrating {device}", total=len(dtypes) + 1) as advance:
        for name, dt in dtypes:
            measured["matmul"][name], measured["convolution"][name], conv_shape[name] = _dtype(
                dt, n, device, clock
            )
            advance()
        elements = (256 if device == "cuda" else 32) * 2**20
        src = torch.empty(elements, device=device, dtype=torch.float32)
        dst = torch.empty_like(src)
        dst.copy_(src)
        t = statistics.median(clock(lambda: dst.copy_(src)) for _ in range(5))
    doc = {
        "device": device_name(device),
        "peak": {k: max(m[k] for m in measured.values()) for k in measured["matmul"]},
        "bandwidth": 2 * src.numel() * 4 / t,  # read and write
        "measured": measured,
        "matmul_side": n,
        "convolution_shape": conv_shape,  # [batch, channels, side], 3×3, stride 1, padding 1
        "copy_bytes": src.numel() * 4,
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
    }
    path = calibration_path(doc["device"], root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    doc["path"] = str(path)
    return doc


def _dtype(dt, n: int, device: str, clock) -> tuple[float, float, list[int]]:
    """One dtype's matmul FLOP/s, convolution FLOP/s and the convolution's shape."""
    import torch
    import torch.nn.functional as F

    a = torch.randn(n, n, device=device, dtype=dt)
    b = torch.randn(n, n, device=device, dtype=dt)
    matmul = _rate(lambda a=a, b=b: a @ b, 2 * n**3, clock)
    del a, b
    for i, (batch, c, side) in enumerate(CONV_SHAPES[device]):
        x = torch.randn(batch, c, side, side, device=device, dtype=dt)
        w = torch.randn(c, c, 3, 3, device=device, dtype=dt)

        def convolve(x=x, w=w):
            return F.conv2d(x, w, padding=1)

        convolve()  # the first call picks the algorithm
        took = clock(convolve)
        if took >= CONV_CALL_S or i == len(CONV_SHAPES[device]) - 1:
            flops = 2 * batch * c * c * 9 * side * side
            return matmul, _rate(convolve, flops, clock, first=took), [batch, c, side]
    raise AssertionError("unreachable: the last shape is always taken")
