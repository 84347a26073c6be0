"""lora's proofs (:mod:`complexo.prove`): a single adapted layer, each side (full fine-tuning,
LoRA) built with symbolic B, n, d_in, d_out and r, traced, and its hand formulas proved equal
for all shapes. The layer checks r ≤ min(d_in, d_out), which records d_out ≥ d_in or its
opposite as a guard: each side is traced both ways round, so that together they cover every
shape. A whole transformer is not traced symbolically: its L layers are a Python loop, which a
trace unrolls at one L."""

from __future__ import annotations

from complexo.prove import Case, Dim, Symbolic, hand_from

TRACED = {
    "params": "params",
    "trainable_params": "trainable_params",
    "activation_bytes": "activation_bytes",
    "forward_flops": "forward_matmul_flops",  # lora counts matrix products only
    "backward_flops": "backward_matmul_flops",
    "train_step_flops": "step_matmul_flops",
}

UNTRACED = {
    "checkpoint_bytes": "what is written to disk, no count of a run",
    "weight_bytes": "the training state's bytes, by precision (fp32 master weights) and "
    "optimizer: measured by a real optimizer step on meta tensors, not traced",
    "gradient_bytes": "as weight_bytes",
    "optimizer_bytes": "as weight_bytes",
    "train_memory_bytes": "as weight_bytes, plus the proved activation bytes",
    "backward_dx_flops": "a split of the proved backward FLOPs by gradient, which the trace's "
    "per-op totals do not make",
    "backward_dw_flops": "as backward_dx_flops",
    "lora_forward_flops": "the adapter's share of the proved forward FLOPs (a merged forward "
    "is measured against it)",
    "lora_path_flops": "as lora_forward_flops",
    "inference_flops_merged": "the merged forward: the base layer's product, within the proved "
    "forward FLOPs",
}


def variant(cfg) -> str:
    """A checkpointed model is a variant of its own, which the suite does not trace."""
    name = "layer" if cfg.single_layer else "model"
    return name if cfg.checkpoint == "none" else f"{name}, checkpoint {cfg.checkpoint}"


def cases(cfg) -> list[Case]:
    from complexo.analyses.lora import QUANTITIES, SIDES
    from complexo.analyses.lora_cost import cost_model

    if not cfg.single_layer:
        return []
    out = []
    for side in SIDES:
        hand = hand_from(QUANTITIES, cost_model(cfg, side), TRACED)
        for wide, narrow in ((11, 13), (13, 11)):  # d_out ≥ d_in, then d_in > d_out
            dims = (Dim("B", 3), Dim("n", 5), Dim("d_in", wide), Dim("d_out", narrow), Dim("r", 2))
            out.append(Case(dims, _build(side, cfg.alpha), hand, TRACED, side=side))
    return out


def _build(side: str, alpha: float):
    def build(size):
        import torch

        from complexo.blocks.lora import LoRALinear

        layer = torch.nn.Linear(size["d_in"], size["d_out"])
        if side == "lora":
            layer = LoRALinear(layer, size["r"], alpha)
        x = torch.empty(size["B"], size["n"], size["d_in"], requires_grad=True)
        return layer, (x,)

    return build


SYMBOLIC = Symbolic(
    variant=variant,
    cases=cases,
    variants={"layer": {"in_features": 768, "out_features": 3072, "rank": 8}},
    untraced=UNTRACED,
    where={"layer": "(d_in <= d_out, d_in >= r) or (d_in > d_out, d_out >= r)"},
    unproved={
        "model": "a transformer's L layers are a Python loop, which a trace unrolls at one L "
        "(the counters check it at every size they are given)"
    },
)
