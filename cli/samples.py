"""``geesoil samples``: check sample tables and harmonise horizons to a depth interval."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geesoil.harmonise import METHODS, harmonise
from geesoil.samples import DEFAULT_TARGET, read_samples, save_table, write_rejects


def _depth(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, float]:
    text = value.replace("–", "-").replace("cm", "").strip()
    try:
        top, bottom = (float(p) for p in text.split("-"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not TOP-BOTTOM in cm, e.g. 0-30") from None
    if not 0 <= top < bottom:
        raise click.BadParameter(f"{value!r}: need 0 <= TOP < BOTTOM, e.g. 0-30")
    return top, bottom


_target = click.option(
    "--target",
    default=DEFAULT_TARGET,
    show_default=True,
    help="Column with the property to map (ORCDRC is accepted for oc_gkg).",
)
_crs = click.option(
    "--crs",
    default=None,
    help="CRS of the x/y columns of a CSV/Parquet file, e.g. EPSG:28355 (default WGS84).",
)
_strict = click.option("--strict", is_flag=True, help="Fail on any invalid row instead of dropping it.")
_rejects = click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write dropped rows (row number, reason, original values) to this CSV.",
)
_file = click.argument("file", type=click.Path(dir_okay=False, path_type=Path))


@click.group("samples")
def samples() -> None:
    """Soil sample tables: validate them and harmonise horizons to a depth interval.

    Accepts CSV (comma or semicolon), Parquet, GeoJSON and GeoPackage. Needs lon/lat (or x/y, longitude/latitude,
    LONWGS84/LATWGS84) and the target column; profile_id, top_cm, bottom_cm and date are optional.
    """


@samples.command("check", short_help="Validate a sample table and print a summary.")
@_file
@_target
@_crs
@_strict
@_rejects
def check(file: Path, target: str, crs: str | None, strict: bool, rejects: Path | None) -> None:
    """Validate FILE and print a summary: counts, ranges, and dropped rows with why.

    \b
    Example:
      geesoil samples check profiles.csv --rejects bad_rows.csv
      geesoil samples check plots.csv --crs EPSG:28355 --target soc

    Exit code 2 (nothing written) when the file cannot be used, or with --strict when any row is invalid.
    """
    ss = read_samples(file, target=target, crs=crs, strict=strict)
    if rejects is not None:
        write_rejects(ss.rejects, rejects)
    click.echo(_table(ss.summary()))


@samples.command("harmonise", short_help="Harmonise horizons to one value per profile over a depth interval.")
@_file
@click.option(
    "--depth",
    default="0-30",
    show_default=True,
    callback=_depth,
    help="Target interval TOP-BOTTOM in cm.",
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="spline",
    show_default=True,
    help="spline: equal-area quadratic spline (Bishop et al. 1999, lambda 0.1); weighted: depth-weighted mean.",
)
@click.option(
    "--allow-partial",
    is_flag=True,
    help="Keep profiles covering only part of the interval (averaged over that part; see top_cm/bottom_cm).",
)
@_target
@_crs
@_strict
@_rejects
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output Parquet file, one row per profile.",
)
def harmonise_cmd(
    file: Path,
    depth: tuple[float, float],
    method: str,
    allow_partial: bool,
    target: str,
    crs: str | None,
    strict: bool,
    rejects: Path | None,
    output: Path,
) -> None:
    """Harmonise the horizons of FILE to one value per profile over --depth and write it to -o.

    \b
    Example:
      geesoil samples harmonise wise.parquet --depth 0-30 -o wise_0-30.parquet
      geesoil samples harmonise pits.csv --depth 0-30 --method weighted --allow-partial -o topsoil.parquet

    Writes columns profile_id, lon, lat, <target>, top_cm, bottom_cm, n_horizons (and profile-level columns such
    as source). Profiles not covering the interval are reported and dropped. Exit code 2, nothing written, when
    the file cannot be used or no profile remains.
    """
    from geesoil.errors import SampleFileError

    ss = read_samples(file, target=target, crs=crs, strict=strict)
    if not ss.is_horizon_level:
        raise SampleFileError(f"{file}: has no top_cm/bottom_cm columns; there are no horizons to harmonise")
    h = harmonise(ss.frame, depth=depth, method=method, target=target, allow_partial=allow_partial)
    interval = f"{depth[0]:g}-{depth[1]:g} cm"
    if h.frame.empty:
        raise SampleFileError(
            f"{file}: no profile covers {interval} ({_counts(h.dropped)}); "
            "choose another --depth or use --allow-partial"
        )
    save_table(h.frame, output)
    if rejects is not None:
        write_rejects(ss.rejects, rejects)
    click.echo(
        f"wrote {len(h.frame)} profiles ({interval}, {method}) to {output}; "
        f"dropped {len(ss.rejects)} rows and {len(h.dropped)} profiles"
        + (f" ({_counts(h.dropped)})" if len(h.dropped) else ""),
        err=True,
    )


def _counts(dropped: Any) -> str:
    counts = dropped["reason"].str.split(":").str[0].value_counts()
    return ", ".join(f"{n} {r}" for r, n in counts.items())


def _table(s: dict[str, Any]) -> str:
    t = s["target"]
    renamed = ", ".join(f"{k} <- {v}" for k, v in s["columns"].items() if k != v)
    rows: list[tuple[str, str]] = [
        ("file", s["file"]),
        ("columns", renamed or "canonical names"),
        ("coordinates", f"from {s['crs']}"),
        ("rows read", str(s["rows_read"])),
        ("rows kept", str(s["rows_kept"])),
        ("rows dropped", str(s["rows_dropped"])),
    ]
    for reason, d in s["dropped_by_reason"].items():
        more = "..." if d["count"] > len(d["first_rows"]) else ""
        rows.append((f"  {reason}", f"{d['count']} (rows {', '.join(map(str, d['first_rows']))}{more})"))
    kind = "horizons" if s["horizon_level"] else "point samples"
    pid = " (ids from location)" if s["profile_id_assigned"] else ""
    rows += [
        ("profiles", f"{s['profiles']}{pid}, {kind}"),
        ("duplicate locations", f"{s['duplicate_locations']} (kept)"),
        ("lon", "{:.4f} .. {:.4f}".format(*s["lon_range"])),
        ("lat", "{:.4f} .. {:.4f}".format(*s["lat_range"])),
        (t, f"min {s['target_min']:.4g}, median {s['target_median']:.4g}, max {s['target_max']:.4g}"),
    ]
    if "depth_range" in s:
        rows.append(("depth (cm)", "{:g} .. {:g}".format(*s["depth_range"])))
        rows.append(("organic layers (<0 cm)", str(s["organic_layers"])))
    if "date_range" in s:
        rows.append(("dates", "{} .. {}".format(*s["date_range"])))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
