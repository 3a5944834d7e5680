"""Every notebook runs top to bottom on the small world (any cell error fails), shows the same
numbers as ``clipfeed eval report`` with the same settings, and is committed without outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from cli.evaluation import comparable
from tests.eval.conftest import FAST

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
SECTIONS = {
    "01_tagger.ipynb": "tagger",
    "02_classifier.ipynb": "classifier",
    "03_recommender.ipynb": "recommender",
    "04_serving.ipynb": "serving",
}


def test_every_notebook_is_tested() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(SECTIONS)


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_committed_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: strip outputs before committing"


def assert_same(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(set(a) ^ set(b))}"
        for k in a:
            assert_same(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_notebook_runs_and_matches_report(
    name: str,
    small_world: Path,
    api_load_file: Path,
    report: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics_out = tmp_path / "metrics.json"
    monkeypatch.setenv("CLIPNB_WORLD", str(small_world))
    monkeypatch.setenv("CLIPNB_METRICS_OUT", str(metrics_out))
    monkeypatch.setenv("CLIPNB_API_LOAD", str(api_load_file))
    for _, var, value in FAST.values():
        monkeypatch.setenv(var, value)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError naming the cell when any cell fails
    section = SECTIONS[name]
    shown = json.loads(metrics_out.read_text(encoding="utf-8"))[section]
    assert_same(comparable(shown), comparable(report[1][section]), section)
