"""Catalog → Earth Engine expression graphs, built and serialised offline (no network, no credentials)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from cli.ee_commands import graph as graph_command
from geesoil.covariates.catalog import load_catalog
from geesoil.covariates.spec import CovariateSpec
from geesoil.ee.expressions import catalog_image, check_window, covariate_image, graph_functions, image_graph
from geesoil.ee.offline import initialize_offline
from geesoil.errors import CovariateError, EarthEngineError

# Scale factors from the Earth Engine catalog pages (MCD43A4, MOD13A1: 0.0001; WorldClim V1 BIO temperatures: 0.1,
# bio03/bio12-bio19: none); bio04 uses 0.1 to get std x 100 (see the catalog note). Checked by hand.
EXPECTED_SCALE = {
    **{f"nbar_b{i}": 0.0001 for i in range(1, 8)},
    **{f"bio{i:02d}": 0.1 for i in (1, 2, 4, 5, 6, 7, 8, 9, 10, 11)},
    **{f"evi_{r}": 0.0001 for r in ("mean", "min", "max")},
}
UNSCALED = {"elevation", "slope", "lithology", "bio03", *(f"bio{i}" for i in range(12, 20))}


@pytest.fixture(scope="module")
def gsoilcpm():
    initialize_offline()
    return load_catalog("gsoilcpm")


def resolve(graph: str | dict[str, Any]) -> Any:
    """The serialised DAG with every ``valueReference`` replaced by its value (a plain tree)."""
    doc = json.loads(graph) if isinstance(graph, str) else graph
    values = doc["values"]

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"valueReference"}:
                return walk(values[node["valueReference"]])
            if "functionDefinitionValue" in node:
                fd = dict(node["functionDefinitionValue"])
                fd["body"] = walk(values[fd["body"]])
                return {"functionDefinitionValue": fd}
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(values[doc["result"]])


def literal(node: Any) -> Any:
    """The Python value of a constant node (``constantValue`` or an ``arrayValue`` of constants)."""
    if "constantValue" in node:
        return node["constantValue"]
    if "arrayValue" in node:
        return [literal(v) for v in node["arrayValue"]["values"]]
    raise AssertionError(f"not a constant: {str(node)[:200]}")


def calls(tree: Any, name: str) -> list[dict[str, Any]]:
    """Arguments of every invocation of ``name`` in a resolved tree."""
    out: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            fi = node.get("functionInvocationValue")
            if fi and fi.get("functionName") == name:
                out.append(fi.get("arguments", {}))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(tree)
    return out


def constants(tree: Any) -> list[Any]:
    out: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "constantValue" in node:
                out.append(node["constantValue"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(tree)
    return out


def test_catalog_lists_the_papers_32_covariates(gsoilcpm):
    names = gsoilcpm.names
    assert len(names) == 32 and len(set(names)) == 32
    groups = {s.name: s.group for s in gsoilcpm.covariates}
    assert [n for n in names if groups[n] == "band"] == [f"nbar_b{i}" for i in range(1, 8)]
    assert sorted(n for n in names if groups[n] == "topo") == ["elevation", "slope"]
    assert [n for n in names if groups[n] == "climate"] == [f"bio{i:02d}" for i in range(1, 20)]
    assert sorted(n for n in names if groups[n] == "vegetation") == ["evi_max", "evi_mean", "evi_min"]
    lith = gsoilcpm.by_name()["lithology"]
    assert lith.group == "lithology" and lith.is_categorical and lith.classes and lith.resampling == "nearest"


def test_catalog_image_band_names_are_the_catalog_names(gsoilcpm):
    tree = resolve(image_graph(catalog_image(gsoilcpm.covariates)))
    assert tree["functionInvocationValue"]["functionName"] == "Image.rename"
    assert literal(tree["functionInvocationValue"]["arguments"]["names"]) == gsoilcpm.names


@pytest.mark.parametrize("name", sorted(EXPECTED_SCALE) + sorted(UNSCALED))
def test_each_covariate_loads_its_dataset_band_and_applies_its_scale(gsoilcpm, name):
    spec = gsoilcpm.by_name()[name]
    tree = resolve(image_graph(covariate_image(spec)))
    loads = calls(tree, "ImageCollection.load" if spec.ee.get("collection") else "Image.load")
    assert {literal(a["id"]) for a in loads} == {spec.ee["dataset"]}
    selected = [literal(a["bandSelectors"]) for a in calls(tree, "Image.select")]
    assert [spec.ee["band"]] in selected
    factors = [a["image2"] for a in calls(tree, "Image.multiply")]
    if name in EXPECTED_SCALE:
        assert len(factors) == 1
        assert literal(calls(factors[0], "Image.constant")[0]["value"]) == pytest.approx(EXPECTED_SCALE[name])
    else:
        assert factors == []
    final = tree["functionInvocationValue"]
    assert final["functionName"] == "Image.rename" and literal(final["arguments"]["names"]) == [name]


def test_temporal_composites_use_the_date_window_and_their_reducer(gsoilcpm):
    specs = gsoilcpm.select(["nbar_b1", "evi_mean", "evi_min", "evi_max", "bio01"])
    g = image_graph(catalog_image(specs, "2012-03-01", "2016-07-01"))
    tree = resolve(g)
    windows = [(a["leftValue"], literal(a["rightField"])) for a in calls(tree, "Filter.dateRangeContains")]
    assert windows and all(field == "system:time_start" for _, field in windows)
    for left, _ in windows:
        (rng,) = calls(left, "DateRange") or [left["functionInvocationValue"]["arguments"]]
        assert (literal(rng["start"]), literal(rng["end"])) == ("2012-03-01", "2016-07-01")
    fns = graph_functions(tree)
    assert {"reduce.median", "reduce.mean", "reduce.min", "reduce.max"} <= set(fns)
    # the static WorldClim layer is not filtered by date: two filtered collections (MCD43A4, MOD13A1) only
    datasets = {
        literal(a["collection"]["functionInvocationValue"]["arguments"]["id"])
        for a in calls(tree, "Collection.filter")
    }
    assert datasets == {"MODIS/061/MCD43A4", "MODIS/061/MOD13A1"}


def test_window_changes_the_graph_and_only_the_dates(gsoilcpm):
    spec = gsoilcpm.by_name()["evi_mean"]
    a = image_graph(covariate_image(spec, "2001-01-01", "2005-01-01"))
    b = image_graph(covariate_image(spec, "2010-01-01", "2015-01-01"))
    assert a != b
    assert a.replace("2001-01-01", "2010-01-01").replace("2005-01-01", "2015-01-01") == b


def test_slope_is_derived_with_ee_terrain_from_gtopo30(gsoilcpm):
    tree = resolve(image_graph(covariate_image(gsoilcpm.by_name()["slope"])))
    (slope,) = calls(tree, "Terrain.slope")
    assert literal(calls(slope, "Image.load")[0]["id"]) == "USGS/GTOPO30"


def test_categorical_layer_keeps_integer_codes_and_nearest_neighbour(gsoilcpm):
    fns = graph_functions(resolve(image_graph(covariate_image(gsoilcpm.by_name()["lithology"]))))
    assert "Image.toInt" in fns and "Image.toFloat" not in fns
    assert "Image.resample" not in fns and "Image.multiply" not in fns
    cont = graph_functions(resolve(image_graph(covariate_image(gsoilcpm.by_name()["bio12"]))))
    assert "Image.toFloat" in cont and "Image.resample" in cont


def test_year_pins_the_window_for_annual_products():
    initialize_offline()
    spec = load_catalog("coarse-global-v1").by_name()["landcover_igbp"]  # MCD12C1, "year": 2019
    g = image_graph(covariate_image(spec, "2001-01-01", "2021-01-01"))
    assert '"2019-01-01"' in g and '"2020-01-01"' in g and "2001-01-01" not in g
    assert "reduce.mode" in g


@pytest.mark.parametrize(
    "ee_doc, message",
    [
        (None, "no Earth Engine recipe"),
        ({"dataset": "ECMWF/ERA5/MONTHLY", "band": "t", "derived": "std of monthly means"}, "free-text"),
        (
            {"dataset": "X", "band": "b", "reducer": "median", "collection": False},
            "needs an image collection",
        ),
        ({"dataset": "X", "band": "b", "reducer": "average"}, "unknown 'ee.reducer'"),
        ({"dataset": "X", "band": "b", "terrain": "curvature"}, "unknown 'ee.terrain'"),
        ({"dataset": "X", "band": "b", "scale": "0.1"}, "must be a number"),
        ({"dataset": "X"}, "'ee.band'"),
        ({"dataset": "X", "band": "b", "colection": True}, "unknown 'ee' keys"),
    ],
)
def test_unbuildable_recipes_name_the_covariate(ee_doc, message):
    initialize_offline()
    spec = CovariateSpec(name="thing", group="other", ee=ee_doc)
    with pytest.raises(CovariateError, match=message) as err:
        covariate_image(spec)
    assert "'thing'" in str(err.value)


def test_categorical_recipes_refuse_scaling():
    initialize_offline()
    spec = CovariateSpec(
        name="cls",
        group="other",
        kind="categorical",
        classes={1: "a"},
        ee={"dataset": "X", "band": "b", "scale": 2},
    )
    with pytest.raises(CovariateError, match="class codes"):
        covariate_image(spec)


@pytest.mark.parametrize(
    "start, end",
    [
        ("2020-01-01", "2019-01-01"),
        ("2020-01-01", "2020-01-01"),
        ("2020-13-01", "2021-01-01"),
        ("last year", "2021-01-01"),
    ],
)
def test_bad_windows_are_user_errors(start, end):
    with pytest.raises(EarthEngineError, match="start|end"):
        check_window(start, end)


def test_graph_command_prints_parseable_graph_without_network():
    runner = CliRunner()
    result = runner.invoke(graph_command, ["--start", "2015-01-01", "--end", "2018-01-01", "--compact"])
    assert result.exit_code == 0, result.output
    tree = resolve(json.loads(result.output))
    assert literal(tree["functionInvocationValue"]["arguments"]["names"]) == load_catalog("gsoilcpm").names
    assert "2015-01-01" in result.output and "2018-01-01" in result.output


def test_graph_command_selects_covariates_and_reports_unknown_ones():
    runner = CliRunner()
    ok = runner.invoke(graph_command, ["--covariate", "slope", "--covariate", "bio12", "--compact"])
    assert ok.exit_code == 0, ok.output
    tree = resolve(json.loads(ok.output))
    assert literal(tree["functionInvocationValue"]["arguments"]["names"]) == ["slope", "bio12"]
    bad = runner.invoke(graph_command, ["--covariate", "nope"])
    assert isinstance(bad.exception, CovariateError) and "nope" in str(bad.exception)


def test_pretty_graph_is_the_same_expression():
    runner = CliRunner()
    compact = runner.invoke(graph_command, ["--covariate", "evi_max", "--compact"]).output
    pretty = runner.invoke(graph_command, ["--covariate", "evi_max", "--pretty"]).output
    assert "\n  " in pretty
    assert graph_functions(resolve(json.loads(compact))) == graph_functions(json.loads(pretty))


def test_graph_command_skips_covariates_without_recipe_with_a_warning():
    result = CliRunner().invoke(graph_command, ["--catalog", "coarse-global-v1", "--compact"])
    assert result.exit_code == 0, result.output
    assert "bio04" in result.stderr and "koppen" in result.stderr
    tree = resolve(json.loads(result.stdout))
    names = literal(tree["functionInvocationValue"]["arguments"]["names"])
    assert names == ["elevation", "bio01", "ndvi", "treecover", "landcover_igbp"]
