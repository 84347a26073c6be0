"""Every registered analysis keeps the shared contract (timm-style: parametrised over the registry,
so a new analysis is checked by adding it)."""

import pytest
from typer.testing import CliRunner

from complexo.analyses import ANALYSES
from complexo.cli import app


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_default_config_gives_the_json_contract_with_every_gap_explained(name):
    module = ANALYSES[name]
    doc = module.analyse(module.Config()).to_json()
    assert doc["analysis"] == name == module.NAME
    assert set(doc) >= {"analysis", "config", "convention", "crossovers"}
    # One result, or several side by side (full fine-tuning and LoRA), each with the contract.
    sides = getattr(module, "SIDES", None)
    bodies = [doc[side] for side in sides] if sides else [doc]
    for body in bodies:
        assert set(body) >= {"quantities", "terms", "big_o", "crossovers"}
        for q in body["quantities"].values():
            assert q["unit"] in {"flop", "byte", "param"} and isinstance(q["value"], int)
            assert set(q["measured"]) == {"fvcore", "torch"}
            assert all(g["reason"] != "unexplained" for g in q["gaps"]), q


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_every_analysis_has_a_command_listed_in_help(name):
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert f" {name} " in result.output
