"""Shared option callbacks of ``flow`` commands (``core/cli/options.py``): values that would overflow
or never take effect are refused as bad parameters (exit 2), naming the option."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from flow_engine.cli.ages import MAX_AGE
from flow_engine.cli.options import finite_seconds, finite_usd


@click.command()
@click.option("--stale-after", type=float, callback=finite_seconds)
@click.option("--max-cost", type=float, callback=finite_usd)
def command(stale_after: float | None, max_cost: float | None) -> None:
    click.echo(f"{stale_after} {max_cost}")


@pytest.mark.parametrize("value", ["1e300", "inf", "nan", str(MAX_AGE.total_seconds() + 1)])
def test_a_duration_too_long_for_a_date_is_refused(value):
    result = CliRunner().invoke(command, ["--stale-after", value])
    assert result.exit_code == 2
    assert "Invalid value for '--stale-after'" in result.output and "too long a duration" in result.output


def test_durations_and_amounts_that_fit_are_kept():
    result = CliRunner().invoke(command, ["--stale-after", str(MAX_AGE.total_seconds()), "--max-cost", "1.5"])
    assert result.exit_code == 0 and result.output == f"{MAX_AGE.total_seconds()} 1.5\n"
    assert CliRunner().invoke(command, []).output == "None None\n"


@pytest.mark.parametrize("value", ["-1", "inf", "nan"])
def test_an_amount_that_never_stops_a_run_is_refused(value):
    result = CliRunner().invoke(command, ["--max-cost", value])
    assert result.exit_code == 2 and "is not an amount of USD" in result.output
