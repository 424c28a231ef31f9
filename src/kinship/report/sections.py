"""The report's sections, each an HTML fragment built from the inputs and the computed content."""

from __future__ import annotations

from pathlib import Path

from kinship.report import html as h
from kinship.report.content import THRESHOLD, ReportContent
from kinship.report.inputs import ReportInputs
from kinship.report.numbers import CLASS_NAMES, NEGATIVE_KINDS

KIND_TITLES = {"cross_family": "cross-family", "in_family_nonkin": "in-family non-kin"}


def scores(inputs: ReportInputs, content: ReportContent) -> str:
    """Members, methods and the ensemble side by side, all out of fold."""
    oof, chosen = inputs.ensemble["oof"], inputs.ensemble.get("chosen_method")
    headers = [
        "name",
        "kind",
        "OOF AUC",
        "95 % CI",
        "fold mean ± std",
        "acc @ 0.5",
        "best threshold",
        "acc @ best",
        "train time",
        "input",
        "weights",
        "model",
    ]
    rows = []
    for r in content.rows:
        entry, acc = r.entry(oof), content.accuracy[r.key]
        member = inputs.members.get(r.name) if r.group == "member" else None
        cells = [
            h.cell(r.name, "name"),
            h.cell(r.group, "text"),
            h.cell(h.num(entry.get("auc")), "auc"),
            h.cell(h.interval(entry.get("auc_ci95")), "ci"),
            h.cell(h.mean_std(entry.get("fold_auc_mean"), entry.get("fold_auc_std")), "folds"),
            h.cell(h.num(acc["accuracy_at_0.5"]), "acc"),
            h.cell(h.num(acc["best_threshold"]), "threshold"),
            h.cell(h.num(acc["accuracy_at_best"]), "acc-best"),
            *_member_cells(member),
        ]
        cls = "ensemble" if r.group == "ensemble" else ("chosen" if r.name == chosen else None)
        rows.append(h.row(cells, key=r.key, cls=cls))
    note = (
        f"{oof['pairs']} validation pairs ({oof['positives']} kin), every score out of fold: "
        "a member's from the fold model that never trained on the pair, a method's from the "
        "stacker's nested cross-validation. The interval resamples whole families "
        f"({inputs.ensemble.get('bootstrap', {}).get('resamples', '?')} resamples). "
        "The best threshold and its accuracy are chosen on the same pairs (optimistic). "
        f"✓ marks the method chosen for the test-time ensemble ({chosen})."
        + unscorable_note(inputs)
    )
    table = h.table(headers, rows, "scores-table", text_columns=(0, 1, 10, 11))
    return h.section("scores", "Members and methods", table, note=note)


def unscorable_note(inputs: ReportInputs) -> str:
    """Pairs left out because an image is unreadable, per member and for the ensemble (any
    member's); empty when there are none."""
    counts = {n: m.unscorable for n, m in inputs.members.items()}
    counts["ensemble"] = inputs.ensemble.get("unscorable_pairs", {})
    parts = [
        f"{name} {c.get('oof', 0)} validation, {c.get('holdout', 0)} holdout, "
        f"{c.get('test', 0)} test"
        for name, c in counts.items()
        if any(c.values())
    ]
    if not parts:
        return ""
    return (
        " Pairs with an unreadable image are left out of these scores (a member gives the test "
        f"pairs it cannot score its OOF base rate): {'; '.join(parts)}."
    )


def _member_cells(member) -> list[str]:
    if member is None:
        return [h.cell(h.MISSING) for _ in range(4)]
    time_title = f"sum over {member.folds} folds × {member.seeds} seed(s)"
    return [
        h.cell(h.duration(member.train_seconds), "time", title=time_title),
        h.cell("embed" if member.input_size is None else f"{member.input_size} px", "size"),
        h.cell(Path(member.weights).name, "text weights", title=member.weights),
        h.cell(member.model, "text"),
    ]


def ensemble_choice(inputs: ReportInputs) -> str:
    """The nested choices, the weight sets side by side, and the gain over the best member."""
    e = inputs.ensemble
    gain = e["oof"]["gain_over_best_member"]
    facts = [
        ("method (params)", e.get("method")),
        ("chosen for the test-time ensemble", e.get("chosen_method")),
        ("nested choice per fold", _join(e.get("nested_choices", {}))),
        ("calibration", e.get("calibration")),
        ("ensemble.min_auc", e.get("min_auc")),
        ("members at test time", ", ".join(e.get("test_time_members", []))),
        (
            f"OOF AUC gain over {gain['over']} (paired bootstrap 95 % CI)",
            f"{h.signed(gain['auc_gain'])} {h.interval(gain['ci95'])}",
        ),
    ]
    parts = [h.facts(facts, "ensemble-table")]
    weights = e.get("weights", {})
    if weights:
        sets = list(weights)
        wrows = [
            h.row([h.cell(n, "name")] + [h.cell(h.num(weights[s].get(n))) for s in sets], key=n)
            for n in inputs.member_names
        ]
        parts += ["<h3>Member weights</h3>", h.table(["member", *sets], wrows, "weights-table")]
    note = "`user` are the weights in params.yaml; `searched` are found on OOF AUC (never merged)."
    return h.section("ensemble", "Ensemble choice", *parts, note=note)


def _join(mapping: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in mapping.items()) or h.MISSING


def holdout(inputs: ReportInputs, content: ReportContent) -> str | None:
    split = inputs.ensemble.get("holdout")
    if not split:
        return None
    by_kind = split.get("auc_by_kind", {})  # members and the ensemble: kin vs each negative kind

    def kind_cells(r) -> list[str]:
        found = by_kind.get("ensemble" if r.group == "ensemble" else r.name, {})
        found = found if r.group != "method" else {}
        return [h.cell(h.num(found.get(k)), k) for k in NEGATIVE_KINDS]

    rows = [
        h.row(
            [
                h.cell(r.name, "name"),
                h.cell(r.group, "text"),
                h.cell(h.num(r.entry(split).get("auc")), "auc"),
                h.cell(h.interval(r.entry(split).get("auc_ci95")), "ci"),
                *kind_cells(r),
            ],
            key=r.key,
            cls="ensemble" if r.group == "ensemble" else None,
        )
        for r in content.rows
    ]
    gain = split["gain_over_best_member"]
    note = (
        f"{split['pairs']} pairs ({split['positives']} kin) of families outside every fold; "
        f"members are the mean of their fold models. Gain over {gain['over']}: "
        f"{h.signed(gain['auc_gain'])} {h.interval(gain['ci95'])}."
    )
    headers = [
        "name",
        "kind",
        "holdout AUC",
        "95 % CI",
        *(f"kin vs {KIND_TITLES[k]}" for k in NEGATIVE_KINDS),
    ]
    table = h.table(headers, rows, "holdout-table", (0, 1))
    return h.section("holdout", "Holdout", table, note=note)


def roc(svg: str) -> str:
    caption = (
        "Out-of-fold ROC curves of every member and of the ensemble's chosen score before "
        "calibration (a monotone map at test time: it cannot change the ranking)."
    )
    return h.section("roc", "ROC curves", h.figure(svg, caption, "roc-figure"))


def correlation(svg: str) -> str:
    note = (
        "Pearson correlation of the members' out-of-fold probabilities: members that err "
        "together add little to each other. A constant member has none (n/a)."
    )
    caption = "Correlation of the members' OOF predictions."
    return h.section("correlation", "Correlation", h.figure(svg, caption, "corr-figure"), note=note)


def calibration(inputs: ReportInputs, svg: str) -> str:
    rows = []
    for split in ("oof", "holdout"):
        brier = inputs.ensemble.get(split, {}).get("brier")
        if brier:
            cells = [
                h.cell(split, "name"),
                h.cell(h.num(brier.get("raw"), 4), "brier-raw"),
                h.cell(h.num(brier.get("calibrated"), 4), "brier-calibrated"),
            ]
            rows.append(h.row(cells, key=split))
    headers = ["split", "Brier before calibration", "Brier after calibration"]
    note = (
        f"{inputs.ensemble.get('calibration', '?')} calibration, fitted out of fold. "
        "Brier score: mean squared error of the probability (lower is better)."
    )
    caption = "Reliability: observed kin fraction per bin of predicted probability."
    return h.section(
        "calibration",
        "Calibration",
        h.figure(svg, caption, "calibration-figure"),
        h.table(headers, rows, "brier-table"),
        note=note,
    )


def confusion(content: ReportContent) -> str:
    c = content.confusion
    matrix = h.table(
        ["actual \\ predicted", CLASS_NAMES[0], CLASS_NAMES[1]],
        [
            h.row([h.cell(CLASS_NAMES[0], "name"), h.cell(c["tn"], "tn"), h.cell(c["fp"], "fp")]),
            h.row([h.cell(CLASS_NAMES[1], "name"), h.cell(c["fn"], "fn"), h.cell(c["tp"], "tp")]),
        ],
        "confusion-table",
    )
    rows = []
    for name, values in content.classification.items():
        cells = [h.cell(name, "name")]
        for key in ("precision", "recall", "f1"):
            cells.append(h.cell(h.num(values.get(key)) if key in values else "", key))
        cells.append(h.cell(values["support"], "support"))
        rows.append(h.row(cells, key=name))
    report = h.table(["", "precision", "recall", "F1", "support"], rows, "classification-table")
    note = (
        f"The calibrated ensemble, out of fold, at threshold {THRESHOLD} on its probability "
        "(the accuracy-optimal cut for a calibrated score, chosen without the labels)."
    )
    return h.section(
        "confusion", "Confusion matrix", matrix, "<h3>Classification report</h3>", report, note=note
    )


def kinds(content: ReportContent) -> str:
    first = next(iter(content.by_kind.values()))
    headers = ["name"] + [
        f"kin vs {KIND_TITLES[k]} ({first[k]['negatives']} negatives)" for k in NEGATIVE_KINDS
    ]
    rows = [
        h.row(
            [h.cell(name, "name")] + [h.cell(h.num(v[k]["auc"]), k) for k in NEGATIVE_KINDS],
            key=name,
            cls="ensemble" if name == content.ensemble_curve else None,
        )
        for name, v in content.by_kind.items()
    ]
    note = (
        "OOF AUC of the kin pairs against one kind of negative at a time: strangers from other "
        "families, or relatives by marriage in the same family (harder; — where there are none)."
    )
    return h.section(
        "kinds", "AUC per negative kind", h.table(headers, rows, "kinds-table"), note=note
    )


def data_summary(inputs: ReportInputs) -> str:
    s = inputs.summary
    relationships = f"{s.get('relationship_rows', '?')} ({s.get('usable_relationships', '?')})"
    facts = [
        ("families", s.get("families")),
        ("people", s.get("people")),
        ("train images", s.get("train_images")),
        ("relationship rows (usable)", relationships),
        ("test images", s.get("test_images")),
        ("test pairs", s.get("test_pairs")),
    ]
    totals = h.facts(facts, "data-table")
    headers = [
        "fold",
        "families",
        "people",
        "images",
        "relationships",
        "kin pairs",
        "cross-family pairs",
        "in-family non-kin pairs",
    ]
    rows = []
    for fold, c in s.get("folds", {}).items():
        pairs = c.get("pairs", {})
        cells = [h.cell(fold, "name")] + [
            h.cell(c.get(k, h.MISSING)) for k in ("families", "people", "images", "relationships")
        ]
        cells += [h.cell(pairs.get(k, h.MISSING)) for k in ("kin", *NEGATIVE_KINDS)]
        rows.append(h.row(cells, key=f"fold:{fold}"))
    note = "From reports/prepare/summary.json; folds are family-disjoint."
    return h.section("data", "Data", totals, h.table(headers, rows, "folds-table"), note=note)


def submission(content: ReportContent) -> str:
    result = content.submission
    if result is None:
        text = (
            f"No {content.test_labels_path} in this dataset (the real Kaggle test labels were "
            "never published): the submission cannot be scored here."
        )
        return h.section("submission", "Submission", h.paragraph(text))
    rows = [
        h.row(
            [
                h.cell("submission.csv", "name"),
                h.cell(h.num(result["auc"]), "auc"),
                h.cell(result["pairs"]),
                h.cell(result["positives"]),
            ],
            key="submission",
        )
    ]
    table = h.table(["file", "test AUC", "pairs", "kin"], rows, "submission-table")
    note = f"is_related of submission.csv scored against {content.test_labels_path}."
    return h.section("submission", "Submission", table, note=note)
