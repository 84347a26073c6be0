"""LoRA's reference modules and their readings: full fine-tuning or LoRA on one linear layer or
a decoder-only transformer, built on the meta device and measured by FlopCounterMode, fvcore,
autograd's saved tensors and a real optimizer step. See :mod:`complexo.analyses.lora`."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from complexo.conventions import torch_dtype
from complexo.result import Count

if TYPE_CHECKING:
    from complexo.analyses.lora import Config

LORA_MODULES = ("lora_A", "lora_B")
STACK = "blocks"  # the Transformer's ModuleList of layers


def build(cfg: Config, side: str, device: str | None = "meta"):
    """The reference module for one side (LoRA: adapters added, everything else frozen) and
    its inputs (a layer's x, which needs its gradient; a model's token ids and targets, whose
    forward returns the loss), on ``device``; None: in the current mode (a FakeTensorMode,
    :func:`complexo.peak.tracked_step`)."""
    import contextlib

    import torch

    from complexo.blocks.lora import LoRALinear, add_lora
    from complexo.blocks.transformer import Transformer
    from complexo.peak import in_dtype

    dtype = torch_dtype(cfg.dtype)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        if cfg.single_layer:
            module = in_dtype(torch.nn.Linear(cfg.in_features, cfg.out_features), dtype, device)
            if side == "lora":
                module = LoRALinear(module, cfg.rank, cfg.alpha)
            x = torch.randn(cfg.batch, cfg.seq, cfg.in_features, dtype=dtype, requires_grad=True)
            inputs = (x,)
        else:
            module = in_dtype(Transformer(cfg.spec, cfg.checkpoint), dtype, device)
            if side == "lora":
                add_lora(module, cfg.targets, cfg.rank, cfg.alpha)
            idx = torch.randint(0, cfg.vocab, (cfg.batch, cfg.seq))
            inputs = (idx, torch.randint(0, cfg.vocab, (cfg.batch, cfg.seq)))
    return module, inputs


def measure(cfg: Config, side: str) -> dict:
    """Every reading of one side: torch's (FlopCounterMode, saved tensors, a real optimizer
    step, the module's parameters) and fvcore's, by quantity and counter.

    A model deeper than three layers is measured on its 2- and 3-layer copies and extrapolated
    (:func:`extrapolate_depth`; its middle layers are identical), so that 96
    layers cost what 5 do; ``cfg.full_depth`` measures every layer instead. The tests check that
    both give the same readings."""

    if not extrapolated(cfg):
        return _measure(cfg, side)
    two, three = (_measure(replace(cfg, layers=k), side) for k in (2, 3))
    return extrapolate_depth(two, three, cfg.layers, STACK)


def _measure(cfg: Config, side: str) -> dict:
    from complexo.blocks.lora import adapter_state_dict, merge
    from complexo.measure import (
        count_forward,
        count_fvcore,
        cpu_attention_formulas,
        measure_torch,
        param_counts,
        storage_bytes,
        training_state,
    )

    module, inputs = build(replace(cfg, checkpoint="none"), side)
    mapping = cpu_attention_formulas()
    run = measure_torch(lambda: module(*inputs), list(module.parameters()), custom_mapping=mapping)
    if cfg.checkpoint != "none":  # the backward (with its rerun) and what is saved
        run = _checkpointed(cfg, side, run, mapping)
    state = training_state(module, cfg.optimizer, master_fp32=cfg.master_fp32)
    fv = count_fvcore(module, tuple(i.detach() for i in inputs))
    trained = [p for p in module.parameters() if p.requires_grad]
    merged = run.forward  # full fine-tuning: nothing to merge, inference is the forward
    if side == "lora":
        merge(module)  # fold B·A into the frozen weights, then count inference again
        merged = count_forward(lambda: module(*inputs[:1]), custom_mapping=mapping)
    checkpoint = adapter_state_dict(module) if side == "lora" else module.state_dict()
    step = Count(
        "torch",
        run.forward.total + run.backward.total,
        uncounted_ops=run.forward.uncounted_ops | run.backward.uncounted_ops,
    )
    memory = [state.weight_bytes, state.gradient_bytes, state.optimizer_bytes, run.saved_bytes]
    torch_only = {
        "trainable_params": sum(p.numel() for p in trained),
        "checkpoint_bytes": storage_bytes(checkpoint.values()),
        "weight_bytes": state.weight_bytes,
        "gradient_bytes": state.gradient_bytes,
        "optimizer_bytes": state.optimizer_bytes,
        "activation_bytes": run.saved_bytes,
        "train_memory_bytes": sum(memory),
        "backward_flops": run.backward,
        # the LoRA path's forward: what merging the adapters takes out of a forward
        "lora_forward_flops": run.forward.total - merged.total,
        "train_step_flops": step,
        "inference_flops_merged": merged,
    }
    readings = {name: {"fvcore": None, "torch": v} for name, v in torch_only.items()}
    readings["params"] = param_counts(module)
    readings["forward_flops"] = {"fvcore": fv, "torch": run.forward}
    readings["lora_forward_flops"]["fvcore"] = fv.within(LORA_MODULES)
    return readings


def _checkpointed(cfg: Config, side: str, plain, mapping):
    """A checkpointed model's backward FLOPs and saved bytes, counted on CPU fake tensors: on
    the meta device SDPA reaches the CPU's fused kernel through a TorchFunctionMode, which
    autograd does not carry into a checkpoint's rerun (:func:`complexo.analyses.vit_ckpt
    .fake_build`). The forward, the optimizer's state and the merged count stay the meta
    run's (the same model without checkpoints: the same forward)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from complexo.measure import measure_torch

    with FakeTensorMode(allow_non_fake_inputs=True):
        module, inputs = build(cfg, side, device=None)
        params = list(module.parameters())
        run = measure_torch(lambda: module(*inputs), params, custom_mapping=mapping)
    return replace(plain, backward=run.backward, saved_bytes=run.saved_bytes)


def extrapolated(cfg: Config) -> bool:
    """Whether :func:`measure` reads this model off its 2- and 3-layer copies."""
    return not (cfg.single_layer or cfg.full_depth or cfg.layers <= 3)


def extrapolate_depth(two, three, layers: int, stack: str):
    """A reading of a ``layers``-deep stack of identical layers, from the same reading of its
    2- and 3-layer copies: c(L) = c(2) + (L − 2)·(c(3) − c(2)), exactly, for anything additive
    over layers (FLOPs by op, parameters, bytes). The first layer may differ from the middle
    ones (a LoRA model's first layer computes fewer input gradients) and so may the last (the
    storages it shares with what follows it, the final norm, are not those a middle layer
    shares with the next layer): only the middle layers must be equal.

    Works on ints, ``Count`` s (total and by op; by module, the 3-layer copy's middle layer
    ``{stack}.1`` is repeated as ``{stack}.1`` .. ``{stack}.{L-2}`` and its last layer
    ``{stack}.2`` becomes ``{stack}.{L-1}``), dicts of those, and None.
    """
    if two is None or three is None:
        return None
    if isinstance(two, dict):
        return {k: extrapolate_depth(two.get(k), three.get(k), layers, stack) for k in three}
    if isinstance(two, Count):
        by_module = {}
        for k, v in three.by_module.items():
            index, rest = _layer_of(k, stack)
            if index == 1:
                for i in range(1, layers - 1):
                    by_module[f"{stack}.{i}{rest}"] = v
            elif index == 2:
                by_module[f"{stack}.{layers - 1}{rest}"] = v
            else:
                by_module[k] = extrapolate_depth(two.by_module.get(k, 0), v, layers, stack)
        by_op = {
            k: extrapolate_depth(two.by_op.get(k, 0), v, layers, stack)
            for k, v in three.by_op.items()
        }
        return Count(
            two.counter,
            extrapolate_depth(two.total, three.total, layers, stack),
            by_op,
            two.uncounted_ops | three.uncounted_ops,
            by_module,
        )
    return two + (layers - 2) * (three - two)


def _layer_of(module: str, stack: str) -> tuple[int | None, str]:
    """(the layer index, the rest of the name) of ``{stack}.{i}.rest``; (None, "") elsewhere."""
    if not module.startswith(stack + "."):
        return None, ""
    index, _, rest = module[len(stack) + 1 :].partition(".")
    return (int(index), f".{rest}" if rest else "") if index.isdigit() else (None, "")
