"""The committed notebooks are readable where no JavaScript runs: every figure output carries
a PNG next to plotly's JSON, and no notebook embeds plotly.js or loads it from a CDN.

nbval does not compare figure outputs, so this is what holds `notebooks/build.py` to it."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
PLOTLY_JSON = "application/vnd.plotly.v1+json"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_has_a_static_image(path):
    notebook = nbformat.read(path, as_version=4)
    figures = [
        output.data
        for cell in notebook.cells if cell.cell_type == "code"
        for output in cell.outputs if PLOTLY_JSON in output.get("data", {})
    ]
    assert figures, f"{path.name} shows no figure"
    for data in figures:
        assert "image/png" in data and len(data["image/png"]) > 1000
        assert "text/html" not in data  # no plotly.js inline, nothing from a CDN
    text = path.read_text()
    assert "cdn.plot.ly" not in text and "require.config" not in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_ends_with_its_conclusion(path):
    last = nbformat.read(path, as_version=4).cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## Conclusion")
