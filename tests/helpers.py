"""What the CLI tests share: one runner that keeps stderr apart, and the check that bad input
ends in one clean line on stderr and a non-zero exit."""

from typer.testing import CliRunner

try:
    runner = CliRunner(mix_stderr=False)  # click < 8.2: keep stderr apart
except TypeError:
    runner = CliRunner()  # click ≥ 8.2 and typer's vendored click always do


def assert_one_line_error(result, message: str) -> None:
    assert result.exit_code != 0
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an escaped exception


EXACT = ("forward_matmul_flops", "backward_matmul_flops", "params", "activation_bytes")


def assert_exact(result, names=(*EXACT, "forward_moved_bytes")) -> None:
    """torch's reading equals the formula for each of ``names``; fvcore's too, where it reads."""
    for name in names:
        q = result.quantity(name)
        assert q.measured["torch"] == q.value, (name, q.measured, q.value)
        assert q.measured["fvcore"] in (None, q.value), (name, q.measured, q.value)
