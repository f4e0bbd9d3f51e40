"""The notebooks are valid nbformat without outputs, their code compiles, and the quickstart runs offline."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_quickstart.ipynb", "02_earth_engine.ipynb", "03_transfer_learning.ipynb"]
_MAGIC = re.compile(r"^\s*[%!]")


def _code(cell: dict) -> str:
    src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    return "\n".join("pass" if _MAGIC.match(line) else line for line in src.splitlines())


def test_the_notebooks_are_all_here() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_valid_and_compiles(name: str) -> None:
    path = NOTEBOOKS / name
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["nbformat"] == 4 and doc["metadata"]["kernelspec"]["name"] == "python3"
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.reads(path.read_text(encoding="utf-8"), as_version=4))
    code = [c for c in doc["cells"] if c["cell_type"] == "code"]
    assert code and doc["cells"][0]["cell_type"] == "markdown"
    for i, cell in enumerate(code):
        assert cell["outputs"] == [] and cell["execution_count"] is None, f"{name}: cell {i} has outputs"
        ast.parse(_code(cell), filename=f"{name}[{i}]")


def test_magics_are_stripped_before_parsing() -> None:
    cell = {"source": ["%matplotlib inline\n", "!pip list\n", "x = 1\n"]}
    assert ast.parse(_code(cell)).body[-1].targets[0].id == "x"
    with pytest.raises(SyntaxError):
        ast.parse(_code({"source": ["x = (\n"]}))


@pytest.mark.slow
def test_quickstart_runs_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Executes 01 with a fresh cache; the starter wheels are reused from the user cache when it has them."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from geesoil.covariates.open import cache_dir

    cache = tmp_path / "cache"
    cache.mkdir()
    wheels = cache_dir() / "wheels"
    if wheels.is_dir():  # building the pack from cached wheels needs no download
        shutil.copytree(wheels, cache / "wheels")
    monkeypatch.setenv("GEESOIL_CACHE_DIR", str(cache))
    monkeypatch.setenv("GEESOIL_NOTEBOOK_DIR", str(tmp_path / "work"))
    nb = nbformat.read(NOTEBOOKS / NAMES[0], as_version=4)
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    out = tmp_path / "work" / "edgeroi-map"
    run = json.loads((out / "run.json").read_text())
    assert run["pixels"]["valid"] > 1000 and 2 < run["summary"]["mean_soc_gkg"] < 60
    assert (tmp_path / "work" / "edgeroi" / "v1" / "soc_mean.tif").is_file()  # the refresh cell published v1
    text = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "published v1 -> up-to-date" in text
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert len(images) == 2  # the map panels and the histogram
    widgets = [
        o
        for c in nb.cells
        for o in c.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert widgets  # the geemap map
    if (
        Path(os.environ.get("GEESOIL_SHARED_DATA", NOTEBOOKS.parents[1] / "shared" / "data")) / "soil"
    ).is_dir():
        assert "aoa.tif" in run["outputs"]  # fine-tuned on the Edgeroi samples: the AOA comes from them


@pytest.mark.slow
def test_transfer_notebook_plots_stored_results(tmp_path: Path) -> None:
    """Executes 03 on the stored benchmark results (without them it would run the experiment: minutes)."""
    results = NOTEBOOKS.parent / "benchmarks" / "results"
    if not list(results.glob("transfer*.json")):
        pytest.skip("no stored transfer results in benchmarks/results")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOKS / NAMES[2], as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 1  # the learning curves
    assert "running a small experiment" not in "".join(o.get("text", "") for o in outputs)
