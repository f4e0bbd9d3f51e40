"""The ``geesoil`` command: a thin click shell over the library."""

from __future__ import annotations

import errno
import importlib
import logging
import os
import sys
from typing import Any

import click

from geesoil import __version__
from geesoil.errors import GeesoilError

#: subcommand name -> "module:attribute"; imported only when that command runs (or help lists it), so that
#: `geesoil refresh` in a cron job does not pay for importing torch, Earth Engine and geopandas up front.
COMMANDS = {
    "samples": "cli.samples:samples",
    "covariates": "cli.covariates:covariates",
    "pretrain": "cli.model:pretrain",
    "finetune": "cli.model:finetune",
    "evaluate": "cli.model:evaluate",
    "map": "cli.map:map",
    "refresh": "cli.refresh:refresh",
    "export": "cli.export:export",
}


class GeesoilGroup(click.Group):
    """Loads subcommands lazily and turns a :class:`GeesoilError` into one line and exit code 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            modname, attr = COMMANDS[cmd_name].split(":")
            self.add_command(getattr(importlib.import_module(modname), attr), cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GeesoilError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)
        except OSError as exc:  # a full or read-only disk is the user's environment, not a bug
            fix = _DISK_FIXES.get(exc.errno or 0)
            if fix is None:
                raise
            where = f" {exc.filename}" if exc.filename else ""
            click.echo(f"Error: cannot write{where}: {os.strerror(exc.errno or 0)}; {fix}", err=True)
            ctx.exit(2)


_DISK_FIXES = {
    errno.ENOSPC: "free some disk space and run again (finished parts are kept)",
    errno.EDQUOT: "free some quota and run again (finished parts are kept)",
    errno.EROFS: "choose a writable output folder",
}


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
      geesoil finetune --model assets/models/global-starter-v1.geesoil \\
          --samples topsoil.parquet --covariates starter_pack -o region.geesoil
      geesoil map --aoi region.geojson --model region.geesoil --covariates starter_pack -o region_map

    Every command has --help with examples.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
