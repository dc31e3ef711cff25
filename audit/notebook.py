"""How the golden notebooks show their figures, wherever they are read.

Each figure is one mimebundle with two views of the same data:

- ``application/vnd.plotly.v1+json``: plotly's JSON, drawn interactively by JupyterLab;
- ``image/png``: a picture for every reader that runs no JavaScript. nbconvert's HTML export
  prefers it to the JSON (which it cannot draw: the issue's blank charts), and GitHub's or
  an editor's notebook preview shows it.

No plotly.js is embedded in a notebook and nothing is fetched from a CDN: the committed
notebooks open offline.

The PNG is drawn by kaleido, which drives a Chrome or Chromium already on the machine.
`notebooks/build.py`, which writes the committed outputs, turns it on (``IMAGES_ENV=1``).
Test runs do not need it: nbval does not compare figure outputs (their cells are marked
``NBVAL_IGNORE_OUTPUT`` and followed by a checked cell that prints the figure's numbers), so
there the bundle holds the JSON alone and neither kaleido nor a browser is required.
"""

from __future__ import annotations

import os

import plotly.io as pio

__all__ = ["IMAGES_ENV", "IMAGE_SIZE", "setup_figures"]

IMAGES_ENV = "CLAIMFIRST_NOTEBOOK_IMAGES"
# Wide enough for a timeline's labels, short enough that a page shows text around it.
IMAGE_SIZE = (960, 480)


def setup_figures() -> str:
    """Set plotly's default renderer for a notebook; return its name."""
    renderer = "plotly_mimetype"
    if os.environ.get(IMAGES_ENV) == "1":
        png = pio.renderers["png"]
        png.width, png.height = IMAGE_SIZE
        renderer += "+png"
    pio.renderers.default = renderer
    return renderer
