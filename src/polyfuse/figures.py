"""One look for every figure polyfuse draws (PNG, headless): the canvas, the saving, the styles.

Curves are told apart by line style and marker, never by colour alone, so a figure stays
readable printed in grey or by a colour-blind reader. matplotlib is imported only when a figure
is drawn, so importing this module is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polyfuse.io import atomic_write

LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
# Dash patterns for horizontal reference lines (classical floors), distinct from curve styles.
DASHES = [(0, (8, 3)), (0, (1, 2)), (0, (5, 2, 1, 2)), (0, (3, 3, 1, 3, 1, 3)), (0, (12, 4))]
DPI = 120


def style(i: int) -> dict[str, Any]:
    """The i-th (linestyle, marker) pair: 4 × 10 combinations before any repeat."""
    return dict(linestyle=LINESTYLES[i % len(LINESTYLES)], marker=MARKERS[i % len(MARKERS)])


def figure(width: float = 6.0, height: float = 4.0, **grid: Any) -> tuple[Any, Any]:
    """A new (figure, axes) on the headless Agg backend, laid out to fit its labels; `grid`
    (nrows, height_ratios, sharex, ...) goes to `plt.subplots` for a figure of several axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), layout="constrained", **grid)


def save(fig: Any, path: Path) -> Path:
    """Write `fig` as a PNG atomically (a crash never leaves half a file) and close it."""
    import matplotlib.pyplot as plt

    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=DPI))
    plt.close(fig)
    return path


__all__ = ["DASHES", "LINESTYLES", "MARKERS", "figure", "save", "style"]
