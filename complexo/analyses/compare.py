"""A CNN beside a ViT at one or several resolutions: each model's own analysis (``cnn``, ``vit``)
per resolution, and where their costs cross as the resolution R grows.

The ViT's projections and MLP grow with R², its attention with R⁴, the CNN's convolutions with
R²; so a ViT that costs about what a CNN costs at 224 overtakes it at some R, found here as the
positive real roots of ViT(R) = CNN(R) with every other size fixed at the config (the CNN's
⌈R/2^k⌉ taken as R/2^k, exact for R a multiple of 32).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import sympy

from complexo.analyses import cnn, vit
from complexo.conventions import CONVENTION
from complexo.cost import Crossover, Kind
from complexo.errors import ComplexoError
from complexo.result import Result, crossover_json
from complexo.symbols import R

NAME = "compare"
KINDS = ("cnn", "vit")


@dataclass(frozen=True)
class Config:
    cnn: str = "resnet50"
    vit: str = "vit-b16"
    res: tuple[int, ...] = (224,)
    batch: int = 1
    dtype: str = "fp32"

    def __post_init__(self):
        if not self.res:
            raise ComplexoError("--res needs at least one resolution")
        object.__setattr__(self, "res", tuple(dict.fromkeys(self.res)))
        for res in self.res:  # each model checks its own: divisibility, downsampling, names
            self.configs(res)

    def configs(self, res: int) -> tuple[cnn.Config, vit.Config]:
        return (
            cnn.Config(self.cnn, res, self.batch, self.dtype),
            vit.Config(self.vit, res, self.batch, self.dtype),
        )


@dataclass
class Comparison:
    config: Config
    results: list[tuple[int, dict[str, Result]]]
    crossovers: list[Crossover] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    analysis: str = NAME

    def to_json(self) -> dict:
        return {
            "analysis": NAME,
            "config": {**self.config.__dict__, "res": list(self.config.res)},
            "convention": CONVENTION,
            "results": [
                {"res": res, "models": {name: r.to_json() for name, r in models.items()}}
                for res, models in self.results
            ],
            "crossovers": [crossover_json(c) for c in self.crossovers],
            "notes": self.notes,
        }


def flops_crossings(vit_result: Result, cnn_result: Result) -> list[float]:
    """Positive real R at which the ViT's forward FLOPs equal the CNN's."""
    fixed = lambda r: {s: v for s, v in r.values.items() if s != R}  # noqa: E731
    a = vit_result.model.total(Kind.FORWARD).subs(fixed(vit_result))
    b = cnn_result.model.total(Kind.FORWARD).replace(sympy.ceiling, lambda x: x)
    poly = sympy.Poly(sympy.expand(a - b.subs(fixed(cnn_result))), R)
    # below the CNN's smallest input the equation has a root too (the class token's constant
    # cost against a vanishing CNN): outside what both models accept, so left out
    return sorted(float(x) for x in poly.nroots(n=12) if x.is_real and x >= cnn.MIN_RES)


def analyse(cfg: Config) -> Comparison:
    results = []
    for res in cfg.res:
        c, v = cfg.configs(res)
        results.append((res, {cfg.cnn: cnn.analyse(c), cfg.vit: vit.analyse(v)}))
    first = results[0][1]
    cnn_result, vit_result = first[cfg.cnn], first[cfg.vit]
    crossovers = list(vit_result.summary.crossovers)
    crossings = flops_crossings(vit_result, cnn_result)
    notes = []
    for x in crossings:
        crossovers.append(
            Crossover(
                f"{cfg.vit}'s forward FLOPs cross {cfg.cnn}'s",
                R,
                sympy.Float(round(x, 1), 6),
                Fraction(x).limit_denominator(1000),
            )
        )
    if not crossings:
        ratio = [
            models[cfg.vit].quantities[0].value / models[cfg.cnn].quantities[0].value
            for _, models in results
        ]
        more = "more" if ratio[0] > 1 else "less"
        notes.append(
            f"{cfg.vit} costs {more} forward FLOPs than {cfg.cnn} at every resolution: "
            f"the two never cross (here {', '.join(f'{x:.2f}×' for x in ratio)})"
        )
    return Comparison(cfg, results, crossovers, notes)
