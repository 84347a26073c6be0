"""A loss: softmax cross-entropy over a vocabulary V behind its LM head (or focal loss), and
CLIP's symmetric InfoNCE. What it costs, what it keeps for backward, how big the logits are, and
what chunking the rows saves; memory-bound apart from the head's matmul.

Symbols: B batch, n tokens, d the head's input width (the head x·Wᵀ is included: it is what a
chunked loss fuses), V vocabulary, c chunks, e bytes per element. Cost model:
:mod:`complexo.analyses.loss_cost`; per-pass costs: :mod:`complexo.conventions`; reference:
:mod:`complexo.blocks.loss`. The FLOP and saved-bytes quantities describe the written-out
reference; ``F.cross_entropy`` is measured beside it (``fused_saved_bytes``).

Measured on the meta device: FlopCounterMode and autograd's saved tensors of the reference, of
``F.cross_entropy`` and of the chunked loss, fvcore's count of the forward, the parameters.

>>> r = analyse(Config(batch=1, seq=1, vocab=4, dim=2))
>>> r.quantity("forward_flops").value  # head 2·2·4 = 16, 5 per logit 20, 3 per row
39
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from complexo.analyses import loss_peak
from complexo.analyses.loss_cost import KINDS, cost_model
from complexo.analyses.loss_profile import PROFILING
from complexo.analyses.loss_proof import SYMBOLIC
from complexo.conventions import DTYPES, torch_dtype
from complexo.cost import Kind
from complexo.devices import DEVICES
from complexo.errors import ComplexoError
from complexo.registry import Analysis, check_options, option, register
from complexo.result import QuantitySpec, Result, build_quantity, summarise
from complexo.symbols import B, V, c, d, e, n

NAME = "loss"
FOCAL_GAMMA = 2.0  # Lin et al. 2017's choice, the default of --gamma
RIDGE_DEVICE = "h100-sxm"
DEFAULTS = {"seq": 1024, "vocab": 50257}


@dataclass(frozen=True)
class Config:
    kind: str = option("xent", "Which loss: cross-entropy, CLIP's InfoNCE, focal.", choices=KINDS)
    batch: int = option(8, "Batch size B (InfoNCE: pairs, its B×B similarities).", min=1)
    seq: int | None = option(None, "Tokens n per sequence (xent, focal; default 1024).", min=1)
    vocab: int | None = option(None, "Vocabulary V (xent, focal; default 50257).", min=1)
    dim: int = option(768, "The head's input width d (InfoNCE: the embeddings' width).", min=1)
    chunks: int = option(1, "Chunks c of the B·n rows for the chunked loss; divides B·n.", min=1)
    dtype: str = option("fp32", "Compute dtype; logits upcast to fp32.", choices=(*DTYPES,))
    gamma: float | None = option(
        None,
        "Focal loss's γ (--kind focal; default 2): (1 − p_t)^γ down-weights well-classified "
        "tokens; γ = 0 is cross-entropy. Its FLOPs do not depend on it.",
        min=0,
        sweep=False,
    )

    def __post_init__(self):
        check_options(self)
        if self.gamma is not None and self.kind != "focal":
            raise ComplexoError("--gamma is focal loss's exponent: it needs --kind focal")
        if self.kind == "infonce":
            for name in ("seq", "vocab"):
                if getattr(self, name) is not None:
                    raise ComplexoError(f"--{name} sizes a vocabulary loss, not --kind infonce")
            if self.chunks != 1:
                raise ComplexoError("--chunks applies to --kind xent or focal")
        elif (self.batch * self.size("seq")) % self.chunks:
            raise ComplexoError(
                f"--chunks {self.chunks} must divide the B·n = {self.batch * self.size('seq')} rows"
            )

    def size(self, name: str) -> int:
        value = getattr(self, name)
        return DEFAULTS[name] if value is None else value

    @property
    def focal_gamma(self) -> float:
        return FOCAL_GAMMA if self.gamma is None else self.gamma

    @property
    def values(self) -> dict:
        common = {B: self.batch, d: self.dim, e: DTYPES[self.dtype].bytes}
        if self.kind == "infonce":
            return common
        return {**common, n: self.size("seq"), V: self.size("vocab"), c: self.chunks}


def quantities(kind: str) -> tuple[QuantitySpec, ...]:
    memory = lambda name, label, tag: QuantitySpec(name, label, Kind.MEMORY, tag=tag)  # noqa: E731
    common = (
        QuantitySpec("forward_flops", "forward FLOPs", Kind.FORWARD),
        QuantitySpec("forward_matmul_flops", "  of which matmuls", Kind.FORWARD, matmul_only=True),
        QuantitySpec("backward_flops", "backward FLOPs", Kind.BACKWARD),
        QuantitySpec("params", "parameters", Kind.PARAMS),
        QuantitySpec("activation_bytes", "saved for backward (reference)", Kind.ACTIVATION),
        memory("logits_bytes", "logits, and their fp32 copy", "logits"),
        memory("logits_grad_bytes", "the logits' gradient", "grad"),
    )
    if kind == "infonce":
        return common
    return (
        *common,
        memory("fused_saved_bytes", "saved for backward by F.cross_entropy", "fused"),
        QuantitySpec("chunked_flops", "chunked: forward (gradients in it)", Kind.ALTERNATIVE),
        memory("chunked_saved_bytes", "chunked: saved for backward (dx, dW)", "chunked_saved"),
        memory("chunked_peak_bytes", "chunked: one chunk's logits, dx, dW", "chunk_peak"),
    )


def build(cfg: Config, impl: str = "reference", device: str = "meta"):
    """The loss module (``impl``: reference, fused, chunked) and its inputs."""
    import torch

    from complexo.blocks import loss as ref

    dtype = torch_dtype(cfg.dtype)
    with torch.device(device):
        if cfg.kind == "infonce":
            a, b = (torch.randn(cfg.batch, cfg.dim, dtype=dtype) for _ in range(2))
            return ref.InfoNCE(), (a.requires_grad_(), b.requires_grad_())
        V_, n_ = cfg.size("vocab"), cfg.size("seq")
        if impl == "chunked":
            module = ref.ChunkedLMHeadLoss(cfg.dim, V_, cfg.chunks)
        else:
            module = ref.LMHeadLoss(cfg.dim, V_, cfg.kind, cfg.focal_gamma, fused=impl == "fused")
        module = module.to(dtype)
        x = torch.randn(cfg.batch, n_, cfg.dim, dtype=dtype, requires_grad=True)
        y = torch.randint(0, V_, (cfg.batch, n_))
    return module, (x, y)


def measure(cfg: Config) -> dict:
    from complexo.counting import counted

    def run(impl):
        from complexo.measure import measure_torch

        module, inputs = build(cfg, impl)
        return module, inputs, measure_torch(lambda: module(*inputs), list(module.parameters()))

    def count():
        from complexo.measure import count_fvcore, param_counts

        module, inputs, ref = run("reference")
        detached = tuple(t.detach() for t in inputs)
        out = {
            "forward_flops": {"fvcore": count_fvcore(module, detached), "torch": ref.forward},
            "forward_matmul_flops": {"fvcore": None, "torch": ref.forward.total},
            "backward_flops": {"fvcore": None, "torch": ref.backward},
            "params": param_counts(module),
            "activation_bytes": {"fvcore": None, "torch": ref.saved_bytes},
        }
        if cfg.kind != "infonce":
            fused, chunked = run("fused")[2], run("chunked")[2]
            out["fused_saved_bytes"] = {"fvcore": None, "torch": fused.saved_bytes}
            out["chunked_flops"] = {"fvcore": None, "torch": chunked.forward}
            out["chunked_saved_bytes"] = {"fvcore": None, "torch": chunked.saved_bytes}
        return out

    return counted(count, {})


def analyse(cfg: Config) -> Result:
    model, values = cost_model(cfg.kind, cfg.dtype == "fp32"), cfg.values
    readings = measure(cfg)
    specs = quantities(cfg.kind)
    qs = [build_quantity(q, model, values, readings.get(q.name, {})) for q in specs]
    growing = (B, d) if cfg.kind == "infonce" else (B, n, d, V)
    summary = summarise(model, values, growing, {}, [])
    v = {q.name: q.value for q in qs}
    facts = {"logits": f"{v['logits_bytes']:,} bytes ({cfg.dtype}, with any fp32 copy)"}
    peak, peak_note = loss_peak.quantity(cfg)  # the training step's high-water mark
    notes = [*_notes(cfg, v), peak_note]
    return Result(NAME, asdict(cfg), values, model, [*qs, peak], summary, notes, facts)


def _notes(cfg: Config, v: dict) -> list[str]:
    elementwise = v["forward_flops"] - v["forward_matmul_flops"]
    moved = v["logits_bytes"] + v["logits_grad_bytes"]
    device = DEVICES[RIDGE_DEVICE]
    ridge = device.ridge("fp32")
    notes = [
        "FlopCounterMode and fvcore count the matmul alone; the log-sum-exp passes (max, "
        "subtract, exp, sum, log-softmax: 5 FLOPs per logit) are complexo's, named in "
        "conventions.py.",
        f"memory-bound past the matmul: the element-wise passes do {elementwise:,} FLOPs over "
        f"{moved:,} bytes of logits and their gradient, {elementwise / moved:.3g} FLOPs per byte "
        f"against {RIDGE_DEVICE}'s fp32 ridge of {ridge:.3g}.",
        "gather keeps its whole input, log p (B·n·V fp32), for a backward that needs only its "
        "size: the written-out loss saves twice the B·n·V floats of F.cross_entropy, which keeps "
        "log_softmax's output alone.",
    ]
    if cfg.kind != "infonce":
        notes.append(
            f"chunked ({cfg.chunks} chunks): the full logits never exist; the gradients are made "
            f"in the forward (3 matmuls there, none in the backward), saving "
            f"{v['chunked_saved_bytes']:,} bytes (dx, dW) instead of {v['activation_bytes']:,}."
        )
    if cfg.kind == "focal":
        notes.append(
            f"focal loss (γ = {cfg.focal_gamma:g}) adds per-token work only, from the target's "
            "log p_t: forward p_t = exp(log p_t), 1 − p_t, (1 − p_t)^γ, × log p_t, 4 FLOPs per "
            "token, backward 9 (conventions.FOCAL_*), whatever γ: the power is one op (a kernel's "
            "exp(γ·log x)); "
            + (
                "γ = 0 weighs every token 1, cross-entropy's value at the same cost (the pow "
                "still runs). "
                if cfg.focal_gamma == 0
                else ""
            )
            + "Against the 5·B·n·V of the log-sum-exp passes that is 1/V of the loss's work."
        )
    return notes


def examples():
    from hypothesis import strategies as st

    vocab = st.builds(
        Config,
        kind=st.sampled_from(("xent", "focal")),
        batch=st.integers(1, 2),
        seq=st.integers(1, 3),
        vocab=st.integers(1, 6),
        dim=st.integers(1, 4),
        chunks=st.just(1),
        dtype=st.sampled_from(list(DTYPES)),
    )
    focal = st.builds(
        Config,
        kind=st.just("focal"),
        batch=st.integers(1, 2),
        seq=st.integers(1, 3),
        vocab=st.integers(1, 6),
        dim=st.integers(1, 4),
        dtype=st.sampled_from(list(DTYPES)),
        gamma=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    )
    nce = st.builds(
        Config,
        kind=st.just("infonce"),
        batch=st.integers(1, 4),
        dim=st.integers(1, 4),
        dtype=st.sampled_from(list(DTYPES)),
    )
    return vocab | focal | nce


ANALYSIS = register(
    Analysis(
        name=NAME,
        title="A loss: softmax cross-entropy behind an LM head, focal, CLIP's InfoNCE.",
        help="Softmax cross-entropy over a vocabulary V (the LM head's matmul included), focal "
        "loss, or CLIP's symmetric InfoNCE: each log-sum-exp pass named, forward and backward; "
        "the logits' bytes (and their fp32 copy, their gradient); what the written-out "
        "reference and F.cross_entropy keep for backward; a chunked loss's peak and saved "
        "bytes. Checked against fvcore, FlopCounterMode and autograd's saved tensors on the "
        "meta device.",
        config=Config,
        analyse=analyse,
        profiling=PROFILING,
        examples=examples,
        symbolic=SYMBOLIC,
    )
)
