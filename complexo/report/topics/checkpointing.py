"""The training-memory page's section on activation checkpointing (``complexo vit
--checkpoint``): each mode's saved activations, peak and rerun FLOPs against MemTracker running
the real torch.utils.checkpoint; the bytes per block beside Korthikanti et al.'s; the batches a
memory budget fits per mode."""

from __future__ import annotations

from complexo.report.page import Page, _math, _table
from complexo.units import human

BATCH = 32  # ViT-B/16 at 224: the activations outweigh the weights and their gradients


def checkpointing_section(page: Page) -> None:
    from complexo.analyses import vit, vit_ckpt, vit_peak
    from complexo.cost import Kind, evaluate
    from complexo.peak import peak

    page.add(
        "## Activation checkpointing: ViT-B/16 at 224, B=32, fp32",
        "",
        '`complexo vit --checkpoint none|full|selective` (Korthikanti et al. 2022, "Reducing '
        'Activation Recomputation in Large Transformer Models"). **full** runs each encoder '
        "block under `torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)`: the "
        "forward keeps each block's input only, and the backward runs the block's forward again "
        "just before its backward, so the step peaks in a backward block with every block's "
        "input, one block's activations and the weights' gradients so far. torch stops the rerun "
        "once the block's last saved tensor is made again (GELU's output: fc2 saves its input "
        "before its product runs), so fc2's product is not run twice. **selective** checkpoints "
        "the attention core, q, k, v -> SDPA -> merged heads: the checkpoint keeps q, k, v and "
        "out_proj keeps the output, so it spares only SDPA's fp32 log-sum-exp. Activations: "
        "what autograd and the checkpoints keep for the backward (the formula, equal to the "
        "saved-tensor hooks' count); extra FLOPs: the rerun's matrix products, executed, not "
        "useful (FlopCounterMode counts them exactly, on CPU fake tensors); MemTracker under "
        "FakeTensorMode runs the real torch.utils.checkpoint.",
        "",
    )
    rows = []
    for mode in ("none", "full", "selective"):
        cfg = vit.Config(model="vit-b16", batch=BATCH, checkpoint=mode)
        model, values = vit.cost_model(mode), cfg.values
        best = peak(vit_peak.ledger(cfg).moments, values)
        tracked = vit_peak.tracked(cfg).bytes
        extra = evaluate(model.group(Kind.BACKWARD, vit_ckpt.RECOMPUTED[mode]), values)
        step = evaluate(model.total((Kind.FORWARD, Kind.BACKWARD), matmul_only=True), values)
        rows.append(
            [
                mode,
                human(evaluate(model.total(Kind.ACTIVATION), values), "byte"),
                f"**{human(best.bytes, 'byte')}**",
                f"{best.phase}: {best.what}",
                f"{human(extra, 'flop')} (+{extra / (step - extra):.1%})" if extra else "—",
                f"{human(tracked, 'byte')} ({tracked - best.bytes:+,} B)",
            ]
        )
    page.add(
        _table(
            ["mode", "activations", "peak (ledger)", "where", "extra FLOPs", "MemTracker"], rows
        ),
        "The CPU profiler's record of a real step (`tests/test_checkpoint.py`, ViT-Ti/16 at "
        "224): full at B=16 holds 111,483,400 bytes by the ledger and MemTracker, and 12·5,056 "
        "more on the CPU: the RNG state each checkpoint keeps to replay randomness "
        "(`torch.get_rng_state()`, made outside any op MemTracker sees); selective at B=4, "
        "the same 12·5,056.",
        "",
    )
    _per_block(page, vit, vit_ckpt)
    _budget(page, vit, vit_ckpt)


def _per_block(page: Page, vit, vit_ckpt) -> None:
    from complexo.cost import evaluate
    from complexo.symbols import n

    page.add(
        "**Bytes per block against Korthikanti et al.** Theirs is for GPT in 16-bit with "
        "dropout (s tokens, b batch, h width, a heads): 34·s·b·h + 5·a·s²·b without "
        "recomputation, 34·s·b·h with selective, 2·s·b·h with full. Ours, derived from the "
        "ledger (what is live at the forward's end with two blocks less with one), in our "
        "symbols (n = s, B = b, d = h, h = a) and at the page's size in 16-bit:",
        "",
    )
    rows = []
    for mode in ("none", "selective", "full"):
        cfg = vit.Config(model="vit-b16", batch=BATCH, dtype="bf16", checkpoint=mode)
        ours = vit_ckpt.in_tokens(vit_ckpt.per_layer(cfg))
        theirs = vit_ckpt.in_tokens(vit_ckpt.korthikanti(mode))
        here = [human(evaluate(x.subs(n, cfg.tokens), cfg.values), "byte") for x in (ours, theirs)]
        rows.append([mode, _math(ours), here[0], _math(theirs), here[1], vit_ckpt.WHY[mode]])
    page.add(_table(["mode", "ours", "here", "Korthikanti et al.", "here", "the difference"], rows))


def _budget(page: Page, vit, vit_ckpt) -> None:
    from complexo.cost import Kind, evaluate

    page.add(
        "**Where checkpointing pays for itself.** Every moment of the ledger is linear in the "
        "batch, so a mode fits a budget M_dev while each moment does: the binding moment = "
        "M_dev, solved for B by `complexo.cost.crossover` (`complexo vit --budget GiB` prints "
        "it; the closed form is in `--json`), and checked on the integer batch. Between "
        "none's largest batch and full's, only full checkpointing fits, at the rerun's FLOPs:",
        "",
    )
    rows = []
    for model, res, dtype, gib in (
        ("vit-b16", 224, "fp32", 16),
        ("vit-b16", 224, "bf16", 16),
        ("vit-l16", 224, "bf16", 16),
        ("vit-l16", 224, "bf16", 80),
        ("vit-h14", 224, "bf16", 80),
    ):
        cfg = vit.Config(model=model, res=res, dtype=dtype)
        fit = {
            m: vit_ckpt.fits(
                vit.Config(model=model, res=res, dtype=dtype, checkpoint=m), gib * 2**30
            )[0]
            for m in ("none", "selective", "full")
        }
        costs = vit.cost_model("full")
        extra = evaluate(costs.group(Kind.BACKWARD, vit_ckpt.RECOMPUTED["full"]), cfg.values)
        step = evaluate(costs.total((Kind.FORWARD, Kind.BACKWARD), matmul_only=True), cfg.values)
        rows.append(
            [
                f"{model} at {res}, {dtype}",
                f"{gib} GiB",
                fit["none"],
                fit["selective"],
                f"**{fit['full']}**",
                f"+{extra / (step - extra):.1%}",
            ]
        )
    page.add(
        _table(
            ["model", "budget", "none: largest B", "selective", "full", "full's extra FLOPs"],
            rows,
        ),
        "Selective recomputation buys nothing here: SDPA's fused kernel already keeps no n×n "
        "matrix, which is what it spares a GPT with materialised attention and dropout.",
        "",
    )


LM_BATCH = 4  # GPT-2 at its context, bf16-mixed AdamW: the activations outweigh the weights'


def lm_checkpointing_section(page: Page, tracked_lora) -> None:
    """``complexo lora --checkpoint`` on GPT-2, both sides; the budget's batches; ``complexo
    mlp --checkpoint full``. ``tracked_lora``: :func:`complexo.analyses.lora_peak.tracked`, or
    the page's cache of it."""
    from complexo.analyses import lora, lora_ckpt, lora_peak
    from complexo.cost import Kind, evaluate
    from complexo.peak import peak

    page.add(
        f"## Activation checkpointing: GPT-2 at n=1024, B={LM_BATCH}, bf16-mixed AdamW, "
        "full fine-tuning and LoRA",
        "",
        "`complexo lora --checkpoint none|full|selective` with the same semantics: **full** "
        "runs each transformer block under `torch.utils.checkpoint.checkpoint(block, x, "
        "use_reentrant=False)`, and the rerun stops once fc_out's input is saved (fc_out's "
        "product is not run again, unless LoRA adapts fc_out: then its base product and its A "
        "run, and the rerun stops before B's); **selective** checkpoints the attention core "
        "(SDPA, k and v repeated within it, the heads merged): the checkpoint keeps q, k, v, "
        "and out_proj keeps the output only where it trains or is adapted, so LoRA on q, v "
        "spares the output and the log-sum-exp, full fine-tuning the log-sum-exp alone. The "
        "ledger (`lora_peak.py`) keeps GPT-3's 96 layers as cheap as 5 (the middle layers "
        "lumped) in every mode; MemTracker runs the real checkpoints under FakeTensorMode.",
        "",
    )
    rows = []
    for side in ("full", "lora"):
        for mode in ("none", "full", "selective"):
            cfg = lora.Config(model="gpt2", batch=LM_BATCH, checkpoint=mode)
            model, values = lora.cost_model(cfg, side), cfg.values
            best = peak(lora_peak.ledger(cfg, side).moments, values)
            tracked = tracked_lora(cfg, side).bytes
            names = lora_ckpt.names(cfg, model)
            extra = evaluate(model.group(Kind.BACKWARD, names), values) if names else 0
            step = evaluate(model.total((Kind.FORWARD, Kind.BACKWARD), matmul_only=True), values)
            rows.append(
                [
                    side,
                    mode,
                    human(evaluate(model.total(Kind.ACTIVATION), values), "byte"),
                    f"**{human(best.bytes, 'byte')}**",
                    f"{best.phase}: {best.what}",
                    f"{human(extra, 'flop')} (+{extra / (step - extra):.1%})" if extra else "—",
                    f"{human(tracked, 'byte')} ({tracked - best.bytes:+,} B)",
                ]
            )
    logits = human(3 * LM_BATCH * 1024 * 50257 * 2, "byte")
    page.add(
        _table(
            ["side", "mode", "activations", "peak (ledger)", "where", "extra FLOPs", "MemTracker"],
            rows,
        ),
        f"At this batch every step peaks in the loss's backward, where the logits, their "
        f"log-softmax and its gradient, 3·B·n·V·e = {logits}, are live beside every block's "
        "saved activations: full checkpointing lowers the peak by what the blocks would keep "
        "beyond their inputs, selective by SDPA's log-sum-exp (and, for LoRA, the core's "
        "output). The CPU profiler's record of a real "
        "step (`tests/test_checkpoint_lm.py`, a 2-layer GPT-2-style model, fp32, SGD) holds "
        "the checkpoints' RNG states beside the ledger, 5,056 bytes each until its block's "
        "backward has run, and during a full rerun one more, the state `fork_rng` keeps while "
        "the rerun replays the saved one; LoRA's α/r scalars (8 bytes each) as without "
        "checkpoints.",
        "",
    )
    _lm_per_block(page, lora)
    _llama(page, lora, lora_peak, tracked_lora)
    _lm_budget(page, lora, lora_ckpt)
    _mlp(page)


def _lm_per_block(page: Page, lora) -> None:
    from complexo.analyses import lora_korthikanti as k
    from complexo.cost import evaluate

    page.add(
        "**Bytes per block against Korthikanti et al.** (GPT-2, n=1024, B=1, bf16; ours read "
        "off the ledger, what is live at the forward's end with three blocks less two, "
        "`complexo/analyses/lora_korthikanti.py`, shown by `complexo lora --checkpoint ...`):",
        "",
    )
    rows = []
    for side in ("full", "lora"):
        for mode in ("none", "selective", "full"):
            cfg = lora.Config(model="gpt2", checkpoint=mode)
            ours, theirs = k.per_layer(cfg, side), k.korthikanti(mode)
            why = k.WHY[mode] if side == "full" or mode == "full" else k.LORA_WHY[mode]
            here = [human(evaluate(x, cfg.values), "byte") for x in (ours, theirs)]
            rows.append([side, mode, _math(ours), here[0], _math(theirs), here[1], why])
    page.add(
        _table(
            ["side", "mode", "ours", "here", "Korthikanti et al.", "here", "the difference"],
            rows,
        ),
        "",
    )


def _llama(page: Page, lora, lora_peak, tracked_lora) -> None:
    from complexo.peak import peak

    page.add(
        "**LLaMA-7B** (n=2048, B=1, bf16-mixed AdamW; `lora_peak_llama.py`): full "
        "checkpointing keeps each block's input and the rotary tables (the checkpoint's "
        "arguments) and stops the rerun before down_proj's product; selective keeps the "
        "rotated q, k and v (G heads) and runs the repeats and SDPA again. MemTracker runs the "
        "real checkpoints under FakeTensorMode on the 2- and 3-layer copies (equal to all 12 "
        "layers of a tiny LLaMA, `tests/test_checkpoint_llama.py`):",
        "",
    )
    rows = []
    for side in ("full", "lora"):
        for mode in ("none", "full", "selective"):
            cfg = lora.Config(model="llama-7b", checkpoint=mode)
            best = peak(lora_peak.ledger(cfg, side).moments, cfg.values)
            tracked = tracked_lora(cfg, side).bytes
            rows.append(
                [
                    side,
                    mode,
                    f"**{human(best.bytes, 'byte')}**",
                    f"{best.phase}: {best.what}",
                    f"{human(tracked, 'byte')} ({tracked - best.bytes:+,} B)",
                ]
            )
    page.add(
        _table(["side", "mode", "peak (ledger)", "where", "MemTracker"], rows),
        "The CPU profiler's record of a real step of a tiny LLaMA (2 layers, fp32, SGD) holds "
        "the checkpoints' RNG states beside the ledger, 5,056 bytes each, and LoRA's α/r "
        "scalars as without checkpoints; in bf16 (B=4, n=64) also the bf16 products' scratch "
        "of the unchecked step, 5,152 bytes: under 5% in each mode.",
        "",
    )


def _lm_budget(page: Page, lora, lora_ckpt) -> None:
    page.add(
        "**The largest batch a budget fits** (`complexo lora --budget GiB`, the ledger's peak, "
        "linear in B; bf16-mixed AdamW at the model's context):",
        "",
    )
    rows = []
    for model, gib in (
        ("gpt2", 8),
        ("gpt2", 24),
        ("gpt2-medium", 24),
        ("gpt2-large", 80),
        ("llama-7b", 24),
    ):
        for side in ("full", "lora"):
            fit = {
                m: lora_ckpt.fits(lora.Config(model=model, checkpoint=m), side, gib * 2**30)[0]
                for m in ("none", "selective", "full")
            }
            rows.append(
                [model, side, f"{gib} GiB", fit["none"], fit["selective"], f"**{fit['full']}**"]
            )
    page.add(
        _table(["model", "side", "budget", "none: largest B", "selective", "full"], rows),
    )


def _mlp(page: Page) -> None:
    from complexo.analyses import mlp, mlp_ckpt, mlp_peak
    from complexo.cost import Kind, evaluate
    from complexo.peak import peak

    page.add(
        "**The MLP block alone** (`complexo mlp --checkpoint full`; selective is refused: the "
        "block has no attention core). d = 768, f = 3072 (gated: f_g = 2048), B = 8, n = 1024, "
        "fp32, biases. One block's rerun makes again everything its forward would have kept, "
        "just before its backward, so the step's peak does not move: what falls is what the "
        "forward leaves for the backward (x alone), and the forward's own high-water only by "
        "what the block lets go on the way (the gated MLP's gate g, once activated); the rerun "
        "costs every product but the last:",
        "",
    )
    rows = []
    for side in mlp.SIDES:
        for mode in ("none", "full"):
            cfg = mlp.Config(dim=768, batch=8, seq=1024, bias=True, checkpoint=mode)
            variant = side if side == "gelu" else cfg.gated
            model = mlp.cost_model(variant, cfg.bias, mode)
            best = peak(mlp_peak.ledger(cfg, side).moments, cfg.values)
            tracked = mlp_peak.tracked(cfg, side).bytes
            names = mlp_ckpt.names(variant, cfg.bias) if mode == "full" else ()
            extra = evaluate(model.group(Kind.BACKWARD, names), cfg.values) if names else 0
            rows.append(
                [
                    side,
                    mode,
                    human(evaluate(model.total(Kind.ACTIVATION), cfg.values), "byte"),
                    human(best.phase_peaks()["forward"], "byte"),
                    f"**{human(best.bytes, 'byte')}**",
                    f"{best.phase}: {best.what}",
                    human(extra, "flop") if extra else "—",
                    f"{human(tracked, 'byte')} ({tracked - best.bytes:+,} B)",
                ]
            )
    page.add(
        _table(
            [
                "side",
                "mode",
                "activations",
                "forward's high-water",
                "peak (ledger)",
                "where",
                "extra FLOPs (executed)",
                "MemTracker",
            ],
            rows,
        ),
    )
