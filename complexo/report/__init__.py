"""The written analyses under ``analyses/``: one Markdown page per topic, generated from the
analyses themselves (formulas rendered from the sympy expressions, numbers from the formulas and
the counters, figures from the same results), never edited by hand.

``--check`` regenerates everything in memory and compares: the Markdown byte for byte, and each
figure by the data it draws (kept beside it as JSON), so formulas, numbers and prose cannot
drift apart while a matplotlib upgrade that moves a pixel does not fail the check.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from complexo.conventions import CONVENTION
from complexo.cost import Kind, plain
from complexo.render import duration, human
from complexo.report.measured import _measured_section, _pairs
from complexo.report.page import Page, _agreement, _math, _percent, _table

ROOT = Path("analyses")


def _lora_phases(page: Page) -> None:
    """Each recorded pair of full and LoRA steps, phase by phase against the roofline."""
    from complexo.profile import shown_config

    for full, lora in _pairs(("lora",), "side", ("full", "lora")):
        c = full["config"]
        shown = shown_config({"config": {k: v for k, v in c.items() if k != "side"}})
        page.add(
            f"{full['device_name']} ({full['device']}), {shown}, {c['precision']}, "
            f"{c['optimizer']}, {full['date']}: the LoRA step took "
            f"{lora['median_s'] / full['median_s']:.0%} "
            f"of the full step's time for {lora['flops'] / full['flops']:.0%} of its FLOPs.",
            "",
        )
        rows = []
        for phase in ("forward", "backward", "optimizer"):
            f, lo = full["by_term"].get(phase), lora["by_term"].get(phase)
            if f and lo:
                rows.append(
                    [
                        phase,
                        duration(f["measured_s"]),
                        duration(lo["measured_s"]),
                        _percent(lo["measured_s"] / f["measured_s"]),
                        f"{lo['flops'] / f['flops']:.0%}" if f["flops"] else "—",
                        f"{human(f['bytes'], 'byte')} / {human(lo['bytes'], 'byte')}",
                    ]
                )
        header = ["phase", "full", "LoRA", "LoRA / full: time", "FLOPs", "fewest bytes"]
        page.add(_table(header, rows))


def _image_ratios(page: Page) -> None:
    """Each recorded ResNet and ViT at the same resolution: time ratio beside FLOPs ratio."""
    lines = []
    for cnn, vit in _pairs(("cnn", "vit"), "analysis"):
        c = cnn["config"]
        lines.append(
            f"- {cnn['device_name']} ({cnn['device']}), {cnn['dtype']}, {cnn['mode']}, "
            f"R = {c['res']}, batch {c['batch']}: {vit['config']['model']} took "
            f"{vit['median_s'] / cnn['median_s']:.2f}× {c['model']}'s time "
            f"({duration(vit['median_s'])} against {duration(cnn['median_s'])}) for "
            f"{vit['flops'] / cnn['flops']:.2f}× its FLOPs"
        )
    if lines:
        page.add("The two models side by side, at the same resolution and batch:", "")
        page.add(*lines, "")


def _kvcache_timings(page: Page) -> None:
    """Each recorded decoding run: one token with the cache, without it, and the prefill, each
    beside its roofline floor and FLOPs per byte."""
    from complexo.profile import recorded, shown_config

    docs = [d for d in recorded() if d.get("analysis") == "kvcache"]
    docs.sort(key=lambda d: (d["device"] != "cuda", d["device_name"], d["config"]["context"]))
    rows = []
    for d in docs:
        t = d["by_term"]

        def cell(phase, t=t):
            row = t[phase]
            floor = f" (floor {duration(row['predicted_s'])})" if row.get("predicted_s") else ""
            return f"{duration(row['measured_s'])}{floor}, {row['intensity']:.3g} FLOP/B"

        rows.append(
            [
                f"{d['device_name']} ({d['device']})",
                shown_config(d),
                d["dtype"],
                cell("decode"),
                cell("no cache"),
                f"{t['no cache']['measured_s'] / t['decode']['measured_s']:.1f}×",
                cell("prefill"),
            ]
        )
    if rows:
        header = ["device", "config", "dtype", "decode one token", "no cache", "÷", "prefill"]
        page.add(
            "Decoding for real: one token against the cache, the same token recomputing the "
            "whole prefix, and the prefill that fills the cache (each timed on its own; "
            "÷: no cache's time over decoding's; FLOP/B: the formula's FLOPs per fewest byte).",
            "",
            _table(header, rows),
        )


def _impl_timings(page: Page) -> None:
    """Naive against SDPA attention, forward, over n: the recorded profiles of one device and
    shape (a GPU's when one is recorded, else a CPU's), as a figure and the speed-up in words."""
    from complexo import plot as plots
    from complexo.profile import recorded

    runs = [
        d
        for d in recorded()
        if d["analysis"] == "mhsa" and d["mode"] == "forward" and d.get("timing") == "eager"
    ]
    groups: dict[tuple, dict[str, dict[int, dict]]] = {}
    for d in runs:
        shape = {k: v for k, v in d["config"].items() if k not in ("seq", "impl")}
        key = (d["device"] != "cuda", d["device_name"], json.dumps(shape, sort_keys=True))
        groups.setdefault(key, {}).setdefault(d["config"]["impl"], {})[d["config"]["seq"]] = d

    def common(key):
        by_impl = groups[key]
        return sorted(set.intersection(*(set(by_impl.get(i, {})) for i in ("naive", "sdpa"))))

    usable = [k for k in sorted(groups) if len(common(k)) >= 2]
    if not usable:
        return
    key = max(usable, key=lambda k: (not k[0], len(common(k))))  # a GPU first, then most points
    seqs, shape = common(key), json.loads(key[2])
    naive, sdpa = ([groups[key][i][n] for n in seqs] for i in ("naive", "sdpa"))
    first = naive[0]
    where = (
        f"{first['device_name']} ({first['device']}), {first['dtype']}, d = {shape['dim']}, "
        f"h = {shape['heads']}, batch {shape['batch']}"
    )

    def span(values, fmt):
        lo, hi = min(values), max(values)
        return (
            fmt.format(lo)
            if fmt.format(lo) == fmt.format(hi)
            else f"{fmt.format(lo)}–{fmt.format(hi)}"
        )

    speedup = [a["median_s"] / b["median_s"] for a, b in zip(naive, sdpa, strict=True)]
    sentence = (
        f"Measured on {where}, {first['date']}: over n = {seqs[0]}..{seqs[-1]} the naive "
        f"implementation took {span(speedup, '{:.1f}')}× the time of the fused kernel "
        "(`--impl sdpa`), for the same matrix-product FLOPs."
    )
    if all("fraction_of_peak" in d for d in naive + sdpa):
        sentence += (
            f" SDPA reached {span([d['fraction_of_peak'] for d in sdpa], '{:.0%}')} of the "
            f"device's peak, the naive {span([d['fraction_of_peak'] for d in naive], '{:.0%}')}"
        )
    if all(d.get("predicted_s") for d in naive + sdpa):
        over = {
            name: [d["median_s"] / d["predicted_s"] for d in ds]
            for name, ds in (("naive", naive), ("sdpa", sdpa))
        }
        sentence += (
            f"; SDPA's time was {span(over['sdpa'], '{:.2f}')}× its roofline floor, the "
            f"naive's {span(over['naive'], '{:.1f}')}× its own (a floor that already counts "
            "writing and re-reading the n×n scores)."
        )
    page.add(sentence, "")
    fig, (ax,) = plots.figure(width=8.5)
    series = {
        impl: [(n, d["median_s"], d.get("predicted_s")) for n, d in zip(seqs, ds, strict=True)]
        for impl, ds in (("naive", naive), ("sdpa", sdpa))
    }
    drawn = plots.draw_impl_times(ax, series, f"measured on {where}")
    page.figure(
        "mhsa-measured",
        fig,
        drawn,
        f"Naive against fused attention, measured forward time and roofline floor against n "
        f"({where})",
        f"{first['dtype']}; times are medians of recorded profiles (profiles/)",
    )


# --- MHSA ------------------------------------------------------------------------------------


def mhsa_page() -> Page:
    from complexo import plot as plots
    from complexo import sweep as sweeps
    from complexo.analyses import kvcache, mhsa

    page = Page("mhsa", "Multi-head self-attention: run-time complexity, memory, variants")
    cfg = mhsa.Config()
    r = mhsa.analyse(cfg)
    page.add(
        f"# {page.title}",
        "",
        "*Generated by `complexo report mhsa`; do not edit by hand.*",
        "",
        "**The question.** What does one multi-head self-attention block cost in FLOPs and memory "
        "as the sequence grows, which term dominates, and what do causal masks, sliding windows, "
        "ALiBi, grouped-query heads, fused kernels and a KV cache change?",
        "",
        f"Conventions: {CONVENTION}. Symbols: B batch, n tokens, d width, h heads (head size "
        "d/h), e bytes per element.",
        "",
        "## Derivation, term by term",
        "",
        "Projections are (B·n, d) × (d, d) products, 2·B·n·d² FLOPs each; the scores Q·Kᵀ are "
        "B·h products (n, d/h) × (d/h, n), 2·B·h·n²·(d/h) = 2·B·n²·d; the weighted sum A·V the "
        "same. Element-wise work is counted per element (softmax 5, scale 1). The backward of "
        "every product computes dX and dW, twice its forward.",
        "",
    )
    rows = [
        [t.name, _math(t.expr), "matmul" if t.matmul else "element-wise", t.note]
        for t in r.model.terms(Kind.FORWARD)
    ]
    page.add(_table(["forward term", "FLOPs", "kind", "why"], rows))
    totals = [
        ["forward FLOPs", _math(r.quantity("forward_flops").expr)],
        ["backward FLOPs", _math(r.quantity("backward_flops").expr)],
        ["parameters", _math(r.quantity("params").expr)],
        ["activations saved for backward (bytes)", _math(r.quantity("activation_bytes").expr)],
    ]
    page.add(_table(["total", "formula"], totals))
    page.add("## Complexity", "")
    for kind, order in r.summary.big_o.items():
        page.add(f"- {kind.replace('_', ' ')}: {order}")
    term, value, share = r.summary.dominant
    page.add(
        f"- dominant forward term at n = {cfg.seq}, d = {cfg.dim}: **{term}**, "
        f"{human(value, 'flop')} ({float(share):.1%})",
    )
    for c in r.summary.crossovers:
        page.add(f"- {c.label}: {_math(c.symbol)} = {_math(c.expr)} ({float(c.value):,.1f} here)")
    page.add("")
    page.add("## At typical sizes (d = 1024, h = 16, fp32, B = 1)", "")
    rows = []
    for seq in (512, 2048, 8192, 32768):
        x = mhsa.analyse(mhsa.Config(seq=seq))
        q = {y.name: y for y in x.quantities}
        rows.append(
            [
                str(seq),
                human(q["forward_flops"].value, "flop"),
                human(q["backward_flops"].value, "flop"),
                human(q["activation_bytes"].value, "byte"),
                human(q["attention_matrix_bytes"].value, "byte"),
                _agreement(q["forward_matmul_flops"]),
            ]
        )
    page.add(
        _table(
            ["n", "forward", "backward", "activations", "attention matrix", "counters (matmuls)"],
            rows,
        )
    )
    vary = [sweeps.parse_vary("seq=256..65536", points=None, step=None, log2=True)]
    sweep = sweeps.run(mhsa, {"dim": 1024}, vary)
    fig, (ax,) = plots.figure(width=10.5)
    drawn = plots.draw_sweep(ax, sweep)
    page.figure(
        "mhsa-sweep",
        fig,
        drawn,
        "Forward FLOPs per term against n at d = 1024: the n² terms overtake the "
        "projections at n = 2·d",
        "fp32",
    )

    page.add("## Variants", "")
    rows = []
    for label, v in (
        ("full", mhsa.Config()),
        ("causal", mhsa.Config(causal=True)),
        ("window 512", mhsa.Config(window=512)),
        ("ALiBi, causal", mhsa.Config(alibi=True, causal=True)),
        ("GQA, 4 k/v heads", mhsa.Config(kv_heads=4)),
        ("MQA, 1 k/v head", mhsa.Config(kv_heads=1)),
        ("fused (flash)", mhsa.Config(impl="flash")),
    ):
        x = mhsa.analyse(v)
        q = {y.name: y for y in x.quantities}
        rows.append(
            [
                label,
                human(q["forward_matmul_flops"].value, "flop"),
                human(q["useful_score_flops"].value, "flop"),
                human(q["params"].value, "param"),
                human(q["activation_bytes"].value, "byte"),
                human(q["kv_bytes"].value, "byte"),
                human(q["attention_hbm_bytes"].value, "byte"),
            ]
        )
    page.add(
        "n = 4096, d = 1024, h = 16, fp32. *Useful* is what a kernel computing only the kept "
        "pairs needs; the dense implementations execute the first column. HBM traffic: standard "
        "attention moves 4·n·(d/h) + 4·n² elements per head, the tiled (FlashAttention) loop "
        "K and V once and Q, O once per block of keys, Θ(n²·d²/M).",
        "",
        _table(
            [
                "variant",
                "executed matmuls",
                "useful scores + A·V",
                "params",
                "activations",
                "k and v",
                "attention HBM traffic",
            ],
            rows,
        ),
    )
    lines = sweeps.run_variants(
        mhsa,
        {"dim": 1024},
        [sweeps.parse_vary("seq=256..16384", points=None, step=None, log2=True)],
        ["", "--causal", "--window 512"],
        "useful_score_flops",
    )
    fig, (ax,) = plots.figure(width=8.5)
    drawn = plots.draw_variants(ax, lines)
    page.figure(
        "attention-variants",
        fig,
        drawn,
        "Scores and A·V a kernel needs: full and causal grow as n², a 512-token window as n",
        "fp32",
    )

    kv = kvcache.analyse(kvcache.Config(model="llama-7b", context=2048, device="h100-sxm"))
    q = {y.name: y for y in kv.quantities}
    page.add(
        "## The KV cache (llama-7b, 2048 tokens, bf16, batch 1)",
        "",
        _table(
            ["quantity", "formula", "value", "counters"],
            [
                [y.label.strip(), _math(y.expr), human(y.value, y.unit), _agreement(y)]
                for y in kv.quantities
            ],
        ),
        *(f"- {k}: {v}" for k, v in kv.facts.items()),
        "",
    )
    page.add(
        "## What the counters see",
        "",
        "fvcore and FlopCounterMode count matrix products only: softmax, scaling and masks are "
        "complexo's element-wise terms, and each gap is attributed to the op that carries it. "
        "fvcore does not count `aten::scaled_dot_product_attention` at all; FlopCounterMode has "
        "no formula for SDPA's CPU kernel (`_scaled_dot_product_flash_attention_for_cpu`), and "
        "counts causal attention dense, as the dense implementations execute it.",
        "",
    )
    _measured_section(page, "mhsa", "kvcache")
    _impl_timings(page)
    _kvcache_timings(page)
    f = {y.name: y.value for y in r.quantities}
    page.add(
        "## The short answer",
        "",
        f"Attention costs O(B·n²·d + B·n·d²) FLOPs: four projections at 2·B·n·d² each and two "
        f"n×n products at 2·B·n²·d each, so the n² part takes over at n = 2·d "
        f"({2 * cfg.dim} tokens for d = {cfg.dim}). The naive implementation also stores the "
        f"B·h·n² probabilities ({human(f['attention_matrix_bytes'], 'byte')} at n = {cfg.seq}): "
        "fused kernels keep O(n) statistics instead and recompute the scores in the backward, "
        "for the same FLOPs and far less memory traffic. A causal mask halves the useful work "
        "but a dense kernel still executes it all; a sliding window makes it O(n·W·d); "
        "grouped-query heads shrink k, v and the KV cache by G/h. With a cache, decoding a token "
        "costs O(L·n·d) instead of recomputing O(L·n²·d), and is memory-bound: about one FLOP "
        "per byte against a GPU's hundreds.",
        "",
    )
    return page


# --- LoRA ------------------------------------------------------------------------------------


def lora_page() -> Page:
    from complexo import plot as plots
    from complexo.analyses import lora

    page = Page("lora", "LoRA vs full fine-tuning: what it saves, and what it does not")
    cmp = lora.analyse(lora.Config(model="gpt2", rank=8))
    full, lo = cmp.sides["full"], cmp.sides["lora"]
    page.add(
        f"# {page.title}",
        "",
        "*Generated by `complexo report lora`; do not edit by hand.*",
        "",
        "**The question.** What does LoRA save in parameters, memory and compute for a given "
        "model and rank, and what does it not save?",
        "",
        f"Conventions: {CONVENTION}; FLOPs here are matrix products only. Symbols: L layers, "
        "d width, f MLP width, V vocabulary, P positions, r rank, B·n tokens, e bytes.",
        "",
        "## Derivation",
        "",
        "A rank-r adapter on a d_in × d_out matrix trains r·(d_in + d_out) parameters instead "
        "of d_in·d_out. Training memory is weights + gradients + optimizer state + saved "
        "activations; the last three shrink only for what trains. A training step is the "
        "forward, the input gradients dX and the weight gradients dW, each about 2 FLOPs per "
        "parameter and token; LoRA removes only the frozen matrices' dW.",
        "",
    )
    names = (
        "trainable_params",
        "train_memory_bytes",
        "forward_flops",
        "backward_dx_flops",
        "backward_dw_flops",
        "train_step_flops",
    )
    rows = [
        [full.quantity(x).label.strip(), _math(full.quantity(x).expr), _math(lo.quantity(x).expr)]
        for x in names
    ]
    page.add(
        "GPT-2 (r on q and v, AdamW, bf16-mixed):",
        "",
        _table(["quantity", "full fine-tuning", "LoRA"], rows),
    )
    rows = []
    for model in ("gpt2", "llama-7b", "gpt3-175b"):
        c = lora.analyse(lora.Config(model=model, rank=8))
        ratio = c.ratio()
        qf, ql = c.sides["full"], c.sides["lora"]
        rows.append(
            [
                model,
                human(qf.quantity("params").value, "param"),
                f"{ratio['trainable_params']:.3%}",
                f"{human(qf.quantity('train_memory_bytes').value, 'byte')} → "
                f"{human(ql.quantity('train_memory_bytes').value, 'byte')}",
                f"{ratio['train_step_flops']:.1%}",
                _agreement(ql.quantity("train_step_flops")),
            ]
        )
    page.add(
        "## At three sizes (r = 8 on q and v, bf16-mixed, AdamW, one sequence of the "
        "model's context)",
        "",
        _table(
            [
                "model",
                "parameters",
                "trained",
                "training memory",
                "step FLOPs vs full",
                "counters (LoRA step)",
            ],
            rows,
        ),
    )
    page.add(
        "## Rank sweep (gpt2)",
        "",
        _table(
            ["r", "trainable", "vs full", "training memory", "step FLOPs vs full"],
            [
                [
                    str(row["rank"]),
                    human(row["trainable_params"], "param"),
                    f"{row['trainable_ratio']:.3%}",
                    human(row["train_memory_bytes"], "byte"),
                    f"{row['train_step_ratio']:.1%}",
                ]
                for row in cmp.sweep
            ],
        ),
    )
    fig, (left, right) = plots.figure(2, width=6.0)
    drawn = plots.draw_lora(left, right, cmp)
    page.figure(
        "lora-gpt2",
        fig,
        drawn,
        "GPT-2: training memory by part, and trainable parameters against rank",
        "bf16-mixed, adamw",
    )
    page.add("## Complexity and crossovers", "")
    for c in cmp.crossovers:
        page.add(
            f"- {c.label}: r = {plain(c.expr) if len(plain(c.expr)) < 40 else '…'} "
            f"({float(c.value):,.1f} for gpt2)"
        )
    page.add("", f"- note: {cmp.notes[0]}", "")
    page.add(
        "## What the counters see",
        "",
        "Every quantity is checked against FlopCounterMode (forward and a real backward with the "
        "base frozen, so the missing dW shows), fvcore (forward), autograd's saved tensors, the "
        "gradients left on the parameters and a real `torch.optim` step on the meta device. "
        "fvcore skips SDPA and counts LayerNorm with its own constant; both gaps are named.",
        "",
    )
    _measured_section(page, "lora")
    _lora_phases(page)
    page.add(
        "## The short answer",
        "",
        f"LoRA trains r·(d_in + d_out) per adapted matrix: for GPT-2 at r = 8 on q and v, "
        f"{human(lo.quantity('trainable_params').value, 'param')} parameters, "
        f"{cmp.ratio()['trainable_params']:.2%} of the model, so gradients, optimizer state and "
        "checkpoints shrink by that ratio. It does not shrink the frozen weights, the activations "
        "(every layer still saves what its input gradient needs), or much of the compute: the "
        "forward and the input gradients through every frozen matrix remain, so a step costs "
        f"about two thirds of full fine-tuning ({cmp.ratio()['train_step_flops']:.1%} here). "
        "Merged, inference costs exactly the base model.",
        "",
    )
    return page


# --- CNN vs ViT ------------------------------------------------------------------------------


def cnn_vs_vit_page() -> Page:
    from complexo import plot as plots
    from complexo.analyses import compare

    page = Page("cnn-vs-vit", "CNN vs ViT: FLOPs, parameters and memory against resolution")
    cmp = compare.analyse(compare.Config("resnet50", "vit-b16", (224, 384, 512, 1024)))
    models = cmp.results[0][1]
    rn, vt = models["resnet50"], models["vit-b16"]
    page.add(
        f"# {page.title}",
        "",
        "*Generated by `complexo report cnn-vs-vit`; do not edit by hand.*",
        "",
        "**The question.** How do a CNN and a Vision Transformer compare in FLOPs, parameters "
        "and activation memory, and how does each scale with the image resolution R?",
        "",
        f"Conventions: {CONVENTION}. A ResNet stage at total stride 2^k has side ⌈R/2^k⌉; a "
        "ViT with patch p has n = (R/p)² + 1 tokens.",
        "",
        "## Derivation",
        "",
        "A convolution with C_out filters of C_in·k² weights over an H_out × W_out map costs "
        "2·B·C_out·H_out·W_out·C_in·k² FLOPs, so every stage of a CNN scales with R². A ViT's "
        "projections and MLP cost 2 FLOPs per weight and token (∝ n ∝ R²), its attention "
        "4·B·n²·d per layer (∝ R⁴).",
        "",
        _table(
            ["model", "forward FLOPs (formula)"],
            [
                ["resnet50", _math(rn.quantity("forward_matmul_flops").expr)],
                ["vit-b16", _math(vt.quantity("forward_matmul_flops").expr)],
            ],
        ),
        "## Complexity and crossovers",
        "",
        f"- resnet50: {rn.summary.big_o['forward_flops']}; vit-b16: "
        f"{vt.summary.big_o['forward_flops']}",
    )
    for c in cmp.crossovers:
        page.add(f"- {c.label}: R = {plain(c.expr)} ({float(c.value):,.0f})")
    page.add(*(f"- {n}" for n in cmp.notes), "")
    rows = []
    for res, ms in cmp.results:
        a, b = ms["resnet50"], ms["vit-b16"]
        rows.append(
            [
                str(res),
                human(a.quantity("forward_flops").value, "flop"),
                human(b.quantity("forward_flops").value, "flop"),
                f"{b.quantity('forward_flops').value / a.quantity('forward_flops').value:.2f}×",
                human(a.quantity("activation_bytes").value, "byte"),
                human(b.quantity("activation_bytes").value, "byte"),
                human(b.quantity("params").value, "param"),
            ]
        )
    page.add(
        "## By resolution (fp32, batch 1)",
        "",
        _table(
            [
                "R",
                "resnet50 FLOPs",
                "vit-b16 FLOPs",
                "ratio",
                "resnet50 activations",
                "vit-b16 activations",
                "vit-b16 params (positions grow with R)",
            ],
            rows,
        ),
    )
    small = compare.analyse(compare.Config("resnet18", "vit-ti16", (224, 384, 512, 1024)))
    page.add("A smaller pair, resnet18 and vit-ti16:", "")
    page.add(*(f"- {c.label}: R ≈ {float(c.value):,.0f}" for c in small.crossovers), "")
    fig, (left, right) = plots.figure(2, width=6.5)
    drawn = plots.draw_compare(left, right, small)
    page.figure(
        "cnn-vs-vit",
        fig,
        drawn,
        "resnet18 vs vit-ti16: FLOPs and activations against R, with the crossovers",
        "fp32, batch 1",
    )
    page.add(
        "## Published figures, and what the counters see",
        "",
        "Every ResNet's and published ViT's parameter count equals torchvision's, and the "
        "multiply-accumulates equal its published GFLOPS (which are MACs) to the digits given: "
        f"resnet50 {human(rn.quantity('params').value, 'param')} and "
        f"{rn.quantity('forward_matmul_flops').value / 2e9:.2f} GMAC, vit-b16 "
        f"{human(vt.quantity('params').value, 'param')} and "
        f"{vt.quantity('forward_matmul_flops').value / 2e9:.2f} GMAC at 224. fvcore cannot "
        "jit-trace a convolution on meta tensors in torch 2.13; each convolution is counted with "
        "fvcore's own conv_flop_count on the meta run's shapes, equal to fvcore's trace on real "
        f"tensors. Counters at 224: resnet50 {_agreement(rn.quantity('forward_matmul_flops'))}; "
        f"vit-b16 {_agreement(vt.quantity('forward_matmul_flops'))} (fvcore has no formula for "
        "SDPA; FlopCounterMode has none for its CPU kernel either, and complexo lends it torch's "
        "own SDPA formulas, `sdpa_flop_count`).",
        "",
    )
    _measured_section(page, "cnn", "vit")
    _image_ratios(page)
    page.add(
        "## The short answer",
        "",
        "A CNN's cost grows with the number of pixels, R²; a ViT's projections and MLP grow "
        "with the number of tokens (R/p)², also R², but its attention with R⁴, and takes over "
        f"at n = 2·d + f tokens (R ≈ {float(vt.summary.crossovers[0].value):,.0f} for "
        "vit-b16). At 224 ViT-B/16 already costs about 4× ResNet-50 and the gap widens with R; "
        "smaller ViTs start below their CNN and cross it at a few hundred pixels. Activations "
        "of both grow as R² with a fused attention kernel.",
        "",
    )
    return page


TOPICS: dict[str, Callable[[], Page]] = {
    "mhsa": mhsa_page,
    "lora": lora_page,
    "cnn-vs-vit": cnn_vs_vit_page,
}


def generate(topics, root: Path = ROOT) -> list[Path]:
    """Write each topic's page and figures (SVG and the data they draw)."""
    written = []
    (root / "figures").mkdir(parents=True, exist_ok=True)
    for topic in topics:
        page = TOPICS[topic]()
        for name, (fig, data) in page.figures.items():
            from complexo.plot import save_svg

            save_svg(fig, root / "figures" / f"{name}.svg")
            data_path = root / "figures" / f"{name}.json"
            data_path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
            written += [root / "figures" / f"{name}.svg", data_path]
        path = root / f"{topic}.md"
        path.write_text(page.text)
        written.append(path)
    index = root / "README.md"
    index.write_text(_index())
    return [*written, index]


def check(topics, root: Path = ROOT) -> list[str]:
    """What differs between the committed pages and what complexo generates now."""
    from complexo.plot import close

    stale = []
    for topic in topics:
        page = TOPICS[topic]()
        path = root / f"{topic}.md"
        if not path.exists() or path.read_text() != page.text:
            stale.append(str(path))
        for name, (fig, data) in page.figures.items():
            close(fig)
            data_path = root / "figures" / f"{name}.json"
            fresh = json.loads(json.dumps(data, sort_keys=True))
            if not data_path.exists() or json.loads(data_path.read_text()) != fresh:
                stale.append(str(data_path))
            if not (root / "figures" / f"{name}.svg").exists():
                stale.append(str(root / "figures" / f"{name}.svg"))
    if (root / "README.md").read_text() != _index():
        stale.append(str(root / "README.md"))
    return stale


def _index() -> str:
    rows = {
        "mhsa": "Multi-head self-attention: FLOPs per term, the n² crossover at n = 2·d, "
        "causal/window/ALiBi/GQA/flash, the KV cache",
        "lora": "LoRA vs full fine-tuning: trainable parameters, training memory by part, why a "
        "LoRA step still costs about two thirds",
        "cnn-vs-vit": "ResNets vs ViTs against resolution: R² vs R⁴, crossovers, published counts",
    }
    lines = [
        "# Written analyses",
        "",
        "Generated by `complexo report` (`make report`); `complexo report --check`, part of "
        "`make test`, fails when a page differs from what complexo generates now. Do not edit "
        "these files by hand.",
        "",
    ]
    lines += [f"- [{topic}]({topic}.md): {rows[topic]}" for topic in TOPICS]
    return "\n".join(lines) + "\n"
