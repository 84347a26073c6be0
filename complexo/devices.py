"""Accelerators, from their datasheets: memory, memory bandwidth and dense peak FLOP/s by dtype
(no structured sparsity). GB and TB/s are decimal, as datasheets give them. Every entry says
where its numbers come from.
"""

from __future__ import annotations

from dataclasses import dataclass

from complexo.errors import check_choice

GB = 10**9
TFLOPS = 10**12


@dataclass(frozen=True)
class Device:
    name: str
    memory: int  # bytes
    bandwidth: int  # bytes/s
    peak: dict[str, int]  # dtype -> dense FLOP/s (int8: OP/s)
    source: str

    def ridge(self, dtype: str) -> float:
        """FLOPs per byte above which a kernel is compute-bound rather than memory-bound."""
        return self.peak[dtype] / self.bandwidth


def _peak(fp32: float, bf16: float, int8: float) -> dict[str, int]:
    return {
        "fp32": int(fp32 * TFLOPS),
        "fp16": int(bf16 * TFLOPS),
        "bf16": int(bf16 * TFLOPS),
        "int8": int(int8 * TFLOPS),
    }


DEVICES: dict[str, Device] = {
    d.name: d
    for d in (
        Device(
            "h100-sxm",
            80 * GB,
            3_350 * GB,
            _peak(67, 989.4, 1978.9),
            "NVIDIA H100 Tensor Core GPU datasheet (SXM5 80GB)",
        ),
        Device(
            "h100-pcie",
            80 * GB,
            2_000 * GB,
            _peak(51, 756, 1513),
            "NVIDIA H100 Tensor Core GPU datasheet (PCIe 80GB)",
        ),
        Device(
            "h200",
            141 * GB,
            4_800 * GB,
            _peak(67, 989.4, 1978.9),
            "NVIDIA H200 Tensor Core GPU datasheet (SXM 141GB)",
        ),
        Device(
            "a100-80gb",
            80 * GB,
            2_039 * GB,
            _peak(19.5, 312, 624),
            "NVIDIA A100 Tensor Core GPU datasheet (SXM 80GB)",
        ),
        Device(
            "a100-40gb",
            40 * GB,
            1_555 * GB,
            _peak(19.5, 312, 624),
            "NVIDIA A100 Tensor Core GPU datasheet (SXM 40GB)",
        ),
        Device("l40s", 48 * GB, 864 * GB, _peak(91.6, 362.05, 733), "NVIDIA L40S datasheet"),
        Device(
            "l4", 24 * GB, 300 * GB, _peak(30.3, 121, 242), "NVIDIA L4 Tensor Core GPU datasheet"
        ),
        Device(
            "rtx-4090",
            24 * GB,
            1_008 * GB,
            _peak(82.6, 165.2, 660.6),  # 16-bit with fp32 accumulation, as training runs
            "NVIDIA Ada Lovelace GPU architecture whitepaper (GeForce RTX 4090)",
        ),
    )
}


def device(name: str) -> Device:
    check_choice("device", name, DEVICES)
    return DEVICES[name]
