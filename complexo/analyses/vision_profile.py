"""A CNN or a ViT run for real: its time grouped by layer type (profiler ranges around each
module call, :data:`~complexo.analyses.vision.LAYER_GROUPS`), the element-wise ops that run
between modules (residual adds, GELU) by op name, and a ViT's attention kernel; in training, the
SGD step's phases too. :func:`complexo.profile.run` does the rest."""

from __future__ import annotations

from sympy import Integer

from complexo.conventions import ELEMENTWISE_FLOPS, GELU_FWD_FLOPS
from complexo.cost import Kind, evaluate
from complexo.registry import Profiling, Row, Setup, sgd_rows
from complexo.symbols import B, L, d, e

F = Kind.FORWARD
# The layer type that carries each forward term; the rest run outside any module.
GROUPS = {
    "convolutions": ("stem", "layer1", "layer2", "layer3", "layer4", "patch_embed", "patch_bias"),
    "batchnorm": ("batchnorm",),
    "relu": ("relu",),
    "pooling": ("maxpool", "avgpool"),
    "linear layers": ("fc", "fc_bias", "attn_proj", "mlp", "bias", "head", "head_bias"),
    "layernorm": ("layernorm",),
}


def rows(cfg, mode: str, side: str = "", *, model=None) -> list[Row]:
    """Per layer type: the terms its modules carry and the bytes they move (each call reads its
    input and weights and writes its output once: the model's ``moved`` terms); residual adds
    and GELU by their ops (an add reads two tensors and writes one; GELU reads and writes one);
    a ViT's attention kernel by SDPA's kernels (it reads q, k, v and writes its output)."""
    from complexo.analyses.mhsa_cost import SDPA_KERNELS

    model = model if model is not None else cost_model(cfg)
    names = {t.name: t for t in model.terms(F)}

    def row(name, terms, moved, ops):
        return Row(name, tuple((F, t) for t in terms if t in names), moved, ops)

    out = [
        row(group, terms, model.total(Kind.MEMORY, tag=group), (f"complexo::{group}",))
        for group, terms in GROUPS.items()
        if any(t in names for t in terms)
    ]
    if "attention" in names:  # SDPA runs inside the attention module, outside every layer type
        from complexo.analyses.vit import TOKENS

        qkvo = 4 * L * B * TOKENS * d * e
        out.append(row("attention kernel", ("attention", "scale", "softmax"), qkvo, SDPA_KERNELS))
    if "gelu" in names:
        elements = names["gelu"].expr / GELU_FWD_FLOPS
        out.append(row("gelu", ("gelu",), 2 * elements * e, ("aten::gelu",)))
    adds = [t for t in ("residual_add", "residual", "pos_embed") if t in names]
    if adds:
        moved = sum((3 * names[t].expr / ELEMENTWISE_FLOPS * e for t in adds), Integer(0))
        if "pos_embed" in names:  # the position table is one row of the batch, read once
            from complexo.analyses.vit import TOKENS

            moved -= (B - 1) * TOKENS * d * e
        inplace = "residual_add" in names  # the ResNet's `out += identity`
        out.append(row("residual adds", adds, moved, ("aten::add_" if inplace else "aten::add",)))
    if mode == "train":
        out += sgd_rows(model, sum((r.bytes for r in out), Integer(0)))
    return out


def cost_model(cfg, side: str = ""):
    from complexo.analyses import cnn, vit

    if isinstance(cfg, cnn.Config):
        return cnn.cost_model(cnn.PRESETS[cfg.model].block)
    return vit.cost_model(cfg.checkpoint)


def memory(cfg, mode: str, side: str, model) -> tuple[int, int, str]:
    """An upper bound: weights and every activation saved for a backward (+ gradients in
    training; SGD keeps no state); a training step: its high-water mark with lifetimes
    (:mod:`complexo.analyses.cnn_peak`, :mod:`complexo.analyses.vit_peak`)."""
    values = cfg.values
    weights = evaluate(model.total(Kind.PARAMS), values) * values[e]
    saved = evaluate(model.total(Kind.ACTIVATION), values)
    predicted = weights + saved + (weights if mode == "train" else 0)
    if mode == "train":
        from complexo.analyses import cnn, cnn_peak, vit_peak
        from complexo.peak import peak

        ledgers = cnn_peak if isinstance(cfg, cnn.Config) else vit_peak
        predicted = peak(ledgers.ledger(cfg).moments, values).bytes
    return predicted, predicted, "a smaller --res or --batch"


def setup(cfg, mode: str, side: str, device: str) -> Setup:
    import torch

    from complexo.analyses import cnn, vit
    from complexo.analyses.vision import LAYER_GROUPS
    from complexo.profile.trace import _module_ranges, _phased_step

    train = mode == "train"
    net, x = (cnn if isinstance(cfg, cnn.Config) else vit).build(cfg, device=device)
    net.train(train)
    if train:
        step = _phased_step(lambda: net(x), torch.optim.SGD(net.parameters(), lr=1e-6))
    else:

        def step():
            with torch.no_grad():
                net(x)

    note = (
        "time per layer type from one profiled iteration (profiler ranges around each module "
        f"call{', in the forward' if train else ''}; residual adds and GELU by op), beside its "
        "FLOPs and fewest bytes (each call reads its input and weights and writes its output "
        "once); memory predicted as an upper bound (weights + training activations"
        + (" + gradients; SGD keeps no state)" if train else ")")
    )
    return Setup(
        step,
        [*net.parameters(), *net.buffers(), x],
        ranges=lambda: _module_ranges(net, lambda _, m: LAYER_GROUPS.get(type(m).__name__)),
        notes=[note],
    )


PROFILING = Profiling(
    ("forward", "train"),
    model=cost_model,
    rows=rows,
    memory=memory,
    setup=setup,
    cuda_graph=True,
)


def profile_image(analysis: str, cfg, **runs):
    """A CNN or ViT at ``cfg`` run for real (:func:`complexo.profile.step.profile_side`)."""
    from complexo.profile.step import profile_side
    from complexo.registry import ANALYSES

    return profile_side(ANALYSES[analysis], cfg, **runs)
