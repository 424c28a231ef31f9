"""The report's figures as SVG text (matplotlib's SVG backend, no pyplot and no display).

The bytes are reproducible: no date in the metadata, a fixed hash salt per figure (so element
ids are stable, and distinct between figures inlined in one page), text kept as `<text>`.
Each ROC curve is a `<g class="roc-curve" data-curve="NAME">` for tests and readers' tools.
"""

from __future__ import annotations

import html
import io
import math

import numpy as np
import pandas as pd

ENSEMBLE_COLOUR = "#111111"
FONT = {"font.size": 9, "font.family": "DejaVu Sans"}


def _figure(width: float, height: float, margins: tuple[float, float, float, float]):
    """A figure with fixed margins in inches (left, bottom, right, top): a layout engine would
    cost a second draw (measured: 0.7 s instead of 0.3 s for the three figures)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    left, bottom, right, top = margins
    fig.subplots_adjust(
        left=left / width, bottom=bottom / height, right=1 - right / width, top=1 - top / height
    )
    return fig


def _svg(fig, salt: str) -> str:
    """Serialise one figure; the salt makes its clip-path ids unique within the page."""
    import matplotlib

    buffer = io.StringIO()
    rc = {"svg.hashsalt": f"kinship-{salt}", "svg.fonttype": "none", **FONT}
    with matplotlib.rc_context(rc):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inlined in HTML


def _palette(n: int) -> list[str]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [_hex(cmap(i % 10)) for i in range(n)]


def _hex(rgba) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgba[:3])


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], ensemble: str) -> str:
    """Every curve (name → fpr, tpr, auc) on one plot; `ensemble` drawn last, thick and dark."""
    fig = _figure(5.0, 4.6, (0.6, 0.5, 0.15, 0.1))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#bbbbbb", linewidth=0.8, linestyle="--")
    colours = iter(_palette(len(curves)))
    gids = {}
    for i, (name, (fpr, tpr, value)) in enumerate(curves.items()):
        is_ensemble = name == ensemble
        (line,) = ax.plot(
            fpr,
            tpr,
            color=ENSEMBLE_COLOUR if is_ensemble else next(colours),
            linewidth=2.2 if is_ensemble else 1.3,
            label=f"{name} ({_fmt(value)})",
            zorder=3 if is_ensemble else 2,
        )
        gids[f"roc-curve-{i}"] = name
        line.set_gid(f"roc-curve-{i}")
    ax.set(xlim=(0, 1), ylim=(0, 1.005), xlabel="false positive rate", ylabel="true positive rate")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, title="OOF AUC", title_fontsize=8)
    svg = _svg(fig, "roc")
    for gid, name in gids.items():
        tag = f'id="{gid}" class="roc-curve" data-curve="{html.escape(name, quote=True)}"'
        svg = svg.replace(f'id="{gid}"', tag, 1)
    return svg


def correlation_figure(matrix: pd.DataFrame) -> str:
    """A heat map of the members' correlations, each cell labelled ('n/a' beside a constant)."""
    from matplotlib import colormaps

    n = len(matrix)
    label = 0.075 * max(len(str(name)) for name in matrix.columns) + 0.3  # inches for the names
    side = max(2.4, 0.6 * n)
    fig = _figure(label + side + 1.4, label * 0.7 + side + 0.2, (label, label * 0.7, 1.4, 0.2))
    ax = fig.add_subplot()
    values = np.ma.masked_invalid(matrix.to_numpy(dtype=float))
    cmap = colormaps["RdBu_r"].with_extremes(bad="#e0e0e0")
    mesh = ax.pcolormesh(values, cmap=cmap, vmin=-1, vmax=1, edgecolors="white", linewidth=1)
    for (row, col), value in np.ndenumerate(matrix.to_numpy(dtype=float)):
        text = "n/a" if math.isnan(value) else f"{value:.2f}"
        dark = not math.isnan(value) and abs(value) > 0.6
        ax.text(
            col + 0.5,
            row + 0.5,
            text,
            ha="center",
            va="center",
            fontsize=8,
            color="white" if dark else "#222222",
        )
    ticks = np.arange(n) + 0.5
    ax.set_xticks(ticks, matrix.columns, rotation=40, ha="right")
    ax.set_yticks(ticks, matrix.index)
    ax.set_xlim(0, n)
    ax.set_ylim(n, 0)
    ax.set_aspect("equal")
    colour_axes = fig.add_axes(
        (
            1 - 1.15 / fig.get_figwidth(),
            ax.get_position().y0,
            0.15 / fig.get_figwidth(),
            ax.get_position().height,
        )
    )
    fig.colorbar(mesh, cax=colour_axes, label="Pearson r of OOF predictions")
    return _svg(fig, "correlation")


def calibration_figure(curves: dict[str, pd.DataFrame], probs: np.ndarray) -> str:
    """Reliability curves (name → bins with predicted, observed, count) over the diagonal, and
    below them the histogram of the calibrated probabilities."""
    fig = _figure(5.0, 5.2, (0.6, 0.5, 0.15, 0.1))
    top, bottom = fig.subplots(
        2, 1, height_ratios=[3, 1], sharex=True, gridspec_kw={"hspace": 0.08}
    )
    top.plot([0, 1], [0, 1], color="#bbbbbb", linewidth=0.8, linestyle="--", label="perfect")
    colours = [ENSEMBLE_COLOUR, "#d62728", "#1f77b4"]
    for (name, bins), colour in zip(curves.items(), colours, strict=False):
        top.plot(
            bins["predicted"],
            bins["observed"],
            marker="o",
            markersize=3.5,
            linewidth=1.4,
            color=colour,
            label=name,
        )
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed kin fraction")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    bottom.hist(np.clip(probs, 0, 1), bins=20, range=(0, 1), color="#7f7f7f")
    bottom.set(xlabel="predicted probability (equal-width bins)", ylabel="pairs")
    return _svg(fig, "calibration")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"
