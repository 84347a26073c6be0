"""lora's figure (training memory by part per side; trainable parameters against rank) and its
tiny configs for the registry-wide tests."""

from __future__ import annotations

from complexo.result import Comparison


def draw(axes, cmp: Comparison) -> dict:
    """Training memory by part for each side, stacked; trainable parameters against rank."""
    ax_memory, ax_rank = axes
    cfg = cmp.config
    ax_memory.figure.suptitle(
        f"LoRA vs full fine-tuning: {cfg.get('model') or 'one layer'}, r = {cfg['rank']}"
    )
    parts = ("weight_bytes", "gradient_bytes", "optimizer_bytes", "activation_bytes")
    sides = list(cmp.sides)
    drawn: dict = {}
    bottom = [0.0] * len(sides)
    gib = 2**30
    for part in parts:
        ys = [cmp.sides[s].quantity(part).value / gib for s in sides]
        label = cmp.sides[sides[0]].quantity(part).label
        ax_memory.bar(sides, ys, bottom=bottom, label=label)
        drawn[part] = (list(range(len(sides))), [y * gib for y in ys])
        bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    for i, total in enumerate(bottom):
        ax_memory.annotate(f"{total:.3g} GiB", (i, total), ha="center", va="bottom", fontsize=9)
    ax_memory.set_ylabel("GiB")
    ax_memory.set_title("training memory by part")
    ax_memory.legend(fontsize=8)
    ranks = [row["rank"] for row in cmp.sweep]
    trainable = [row["trainable_params"] for row in cmp.sweep]
    ax_rank.plot(ranks, trainable, marker="o", lw=2, label="LoRA trainable parameters")
    full = cmp.baseline.quantity("trainable_params").value
    ax_rank.axhline(full, color="black", ls="--", lw=1.2, label=f"full fine-tuning: {full:,}")
    drawn["trainable_params"] = (ranks, trainable)
    from complexo.plot import log_axes

    log_axes(ax_rank, "param")
    ax_rank.set_xlabel("rank r")
    ax_rank.set_ylabel("parameters")
    ax_rank.set_title("trainable parameters against rank")
    ax_rank.legend(fontsize=8)
    return drawn


def examples():
    """Single layers and 1- to 3-layer GPT-2/LLaMA models, random targets and precision."""
    from hypothesis import strategies as st

    from complexo.analyses import lora
    from complexo.presets import ARCHS, TARGETS

    layer = st.builds(
        lora.Config,
        in_features=st.integers(2, 12),
        out_features=st.integers(2, 12),
        rank=st.integers(1, 2),
        batch=st.integers(1, 2),
        seq=st.integers(1, 5),
        precision=st.sampled_from(list(lora.PRECISIONS)),
        optimizer=st.sampled_from(lora.OPTIMIZERS),
    )
    model = st.builds(
        lora.Config,
        arch=st.sampled_from(ARCHS),
        layers=st.integers(1, 3),
        dim=st.sampled_from([4, 8]),
        heads=st.just(2),
        kv_heads=st.sampled_from([None, 1, 2]),  # 1: multi-query
        vocab=st.integers(5, 30),
        ctx=st.just(8),
        mlp=st.integers(2, 12),
        rank=st.integers(1, 2),
        targets=st.lists(st.sampled_from(list(TARGETS)), min_size=1, max_size=3).map(tuple),
        batch=st.integers(1, 2),
        seq=st.integers(1, 8),
        precision=st.sampled_from(list(lora.PRECISIONS)),
        optimizer=st.sampled_from(lora.OPTIMIZERS),
    )
    return st.one_of(layer, model)
