"""The report stage (`kinship report`): `reports/index.html`, its figures and their data.

Outputs, each written atomically, identical bytes for identical inputs (no dates, no hosts):
- `reports/index.html`: self-contained (inline CSS and SVG, no script, no URL);
- `reports/figures/*.svg`: the same figures as files (DVC image plots);
- `reports/plots/*.csv`: the figures' data, one row per point (DVC data plots);
- `reports/report/metrics.json`: the submission's test AUC (when labelled), AUC per negative kind.
"""

from __future__ import annotations

import logging
import time

from kinship import paths
from kinship.io import atomic_dir, atomic_file, write_json
from kinship.params import Params
from kinship.report import figures, sections
from kinship.report import html as h
from kinship.report.content import ReportContent, compute, plot_tables, report_metrics
from kinship.report.inputs import ReportInputs, load_inputs

log = logging.getLogger(__name__)

TITLE = "Kinship verification: members and ensemble"


def run_report(params: Params) -> dict:
    """Read the earlier stages' outputs, compute, render and write; returns the report metrics."""
    start = time.perf_counter()
    inputs = load_inputs()
    content = compute(inputs, params.data.root_path)
    svgs = build_figures(inputs, content)
    document = render(inputs, content, svgs)
    metrics = report_metrics(content)
    write_outputs(document, svgs, content, metrics)
    log.info(
        "report: %s (%d members, %d methods) in %.1f s; submission test auc %s",
        paths.REPORT_HTML,
        len(inputs.members),
        len(inputs.methods),
        time.perf_counter() - start,
        h.num((content.submission or {}).get("auc"), 4),
    )
    return metrics


def build_figures(inputs: ReportInputs, content: ReportContent) -> dict[str, str]:
    return {
        "roc": figures.roc_figure(content.roc, content.ensemble_curve),
        "correlation": figures.correlation_figure(content.correlation),
        "calibration": figures.calibration_figure(
            content.reliability, inputs.oof["ensemble_prob"].to_numpy()
        ),
    }


def render(inputs: ReportInputs, content: ReportContent, svgs: dict[str, str]) -> str:
    """The page, row by row: the scores first, then the figures two by two, then the details."""
    rows: list[list[h.Part]] = [
        [("scores", "Scores", sections.scores(inputs, content))],
        [
            ("roc", "ROC", sections.roc(svgs["roc"])),
            ("correlation", "Correlation", sections.correlation(svgs["correlation"])),
        ],
        [
            ("calibration", "Calibration", sections.calibration(inputs, svgs["calibration"])),
            ("confusion", "Confusion", sections.confusion(content)),
        ],
        [("kinds", "Negative kinds", sections.kinds(content))],
        [("ensemble", "Ensemble", sections.ensemble_choice(inputs))],
        [("holdout", "Holdout", sections.holdout(inputs, content))],
        [("data", "Data", sections.data_summary(inputs))],
        [("submission", "Submission", sections.submission(content))],
    ]
    return h.page(TITLE, headline(inputs, content), rows)


def headline(inputs: ReportInputs, content: ReportContent) -> list[tuple[str, str]]:
    """The few numbers a reader looks for first."""
    oof = inputs.ensemble["oof"]
    best = oof["gain_over_best_member"]["over"]
    gain = oof["gain_over_best_member"]
    tiles = [
        (
            "ensemble OOF AUC",
            f"{h.num(oof['ensemble']['auc'])} {h.interval(oof['ensemble']['auc_ci95'])}",
        ),
        (f"best member ({best})", h.num(oof["members"][best]["auc"])),
        ("gain over best member", f"{h.signed(gain['auc_gain'])} {h.interval(gain['ci95'])}"),
        (
            "Brier raw → calibrated",
            f"{h.num(oof['brier']['raw'], 4)} → {h.num(oof['brier']['calibrated'], 4)}",
        ),
    ]
    if inputs.ensemble.get("holdout"):
        tiles.append(("ensemble holdout AUC", h.num(inputs.ensemble["holdout"]["ensemble"]["auc"])))
    if content.submission is not None:
        tiles.append(("submission test AUC", h.num(content.submission["auc"])))
    return tiles


def write_outputs(document: str, svgs: dict[str, str], content: ReportContent, metrics) -> None:
    """Figures and plot data first, the page last: a page on disk always has its figures."""
    with atomic_dir(paths.REPORT_FIGURES_DIR) as tmp:
        for name, svg in svgs.items():
            (tmp / f"{name}.svg").write_text(svg, encoding="utf-8")
    with atomic_dir(paths.REPORT_PLOTS_DIR) as tmp:
        for name, table in plot_tables(content).items():
            table.to_csv(tmp / name, index=False, float_format="%.6g", lineterminator="\n")
    write_json(paths.REPORT_METRICS, metrics)
    with atomic_file(paths.REPORT_HTML, "wb") as fh:
        fh.write(document.encode("utf-8"))
