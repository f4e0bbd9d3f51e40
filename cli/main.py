"""The ``geesoil`` command: a thin click shell over the library."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from geesoil import __version__
from geesoil.errors import GeesoilError


class GeesoilGroup(click.Group):
    """Turns a :class:`GeesoilError` into a one-line message and exit code 2; tracebacks are for bugs."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GeesoilError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=GeesoilGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geesoil")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Map soil organic carbon (SOC) for any region with a globally pretrained, regionally fine-tuned model.

    \b
    Typical session:
      geesoil samples check my_profiles.csv
      geesoil samples harmonise my_profiles.csv --depth 0-30 -o topsoil.parquet
      geesoil covariates pack --starter -o starter_pack
      geesoil covariates extract --samples topsoil.parquet --covariates starter_pack -o train.parquet

    Every command has --help with examples.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _register(modname: str, attr: str) -> Callable[[], None]:
    def load() -> None:
        import importlib

        mod = importlib.import_module(modname)
        cli.add_command(getattr(mod, attr))

    return load


for _mod, _attr in [
    ("cli.samples", "samples"),
    ("cli.covariates", "covariates"),
    ("cli.model", "pretrain"),
    ("cli.model", "finetune"),
    ("cli.model", "evaluate"),
    ("cli.map", "map"),
    ("cli.refresh", "refresh"),
]:
    try:
        _register(_mod, _attr)()
    except ModuleNotFoundError as _exc:  # a subcommand module not written yet
        if _exc.name != _mod:
            raise
