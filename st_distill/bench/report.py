"""The bench report, rebuilt from a results folder alone.

:func:`write_report` reads ``bench.json`` and every finished cell's ``metrics.json`` and
``training_log.jsonl`` under a results folder (the runner's layout, see :mod:`st_distill.bench.runner`)
and writes into ``<results>/report/``:

- ``table.md``, ``table.csv``, ``table.tex``: rows backbone x objective, one column per evaluation
  suite and measure, mean over seeds ± standard deviation (sample, over seeds). Each objective is
  compared with the baseline objective (default ``bce``) of the same backbone on the same suite:
  a two-sided paired t-test on per-query values averaged over seeds, Holm-Bonferroni corrected
  over the objectives of that (backbone, suite, measure); ``▲``/``▼`` mark a significant
  improvement/degradation at level ``alpha``. Reference rows: the first stage (the re-ranked run's
  starting point), a random order of its candidates, the untrained student of each backbone
  (``student at step 0``: mean over its seeds where its head is random, from ``step0/<key>/``)
  and the teacher, where each was evaluated. Next to the main measure, per suite, ``share``: the
  share of the gap from the first stage to the teacher that a row closes (:mod:`st_distill.bench.gap`),
  "–" with a footnote where it is undefined. With two suites or more, a ``pooled`` column per measure
  takes every suite's queries together (its mean weights the suites by their numbers of queries;
  its tests pair all the queries), the study's way to test one claim over several sets.
- ``table.json``: the same numbers, the shares and the reasons a share is undefined.
- ``significance.json``: every test (raw and adjusted p-value, queries, difference).
- ``<suite>.png``: a bar chart per suite (main measure, error bars = std over seeds).
- ``loss_<phase>.png``: training-loss curves (mean over seeds) per backbone.
- ``curves/<suite>.png`` (cells trained with ``[eval.curve]``): the learning curves, the main
  measure against training pairs, one line per objective (mean over seeds), one panel per
  backbone, with the first stage, a random order and the teacher as horizontal lines where
  ``eval/<suite>/`` has them (``first_stage.json``, ``random.json``, ``teacher.json``), and the
  backbone's untrained student (its curves' first point).

Outputs contain no timestamps, so ``st-distill report DIR`` regenerates them byte for byte.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from st_distill.bench.curves import loss_curves, read_curve, save_png
from st_distill.bench.gap import gap_note, share_of_gap
from st_distill.bench.phases.evaluate import REFERENCES, STEP0_LABEL
from st_distill.bench.stats import holm, paired_ttest, seed_mean
from st_distill.bench.workspace import DONE, CellFolder, Workspace
from st_distill.io import atomic_write, read_json, write_json

logger = logging.getLogger(__name__)

__all__ = ["ReportTable", "collect_cells", "build_table", "learning_curves", "step0_levels", "write_report"]

#: The column of every suite's queries together (with two suites or more).
POOLED = "pooled"

UP, DOWN = "▲", "▼"
#: How the reference rows are drawn as horizontal lines in the charts.
REFERENCE_STYLES = {
    "first stage": {"color": "gray", "linestyle": "--"},
    "random order": {"color": "tab:red", "linestyle": ":"},
    "teacher": {"color": "black", "linestyle": "-."},
    STEP0_LABEL: {"color": "tab:green", "linestyle": (0, (1, 3))},
}


def step0_levels(results: str | os.PathLike, bench: dict, phase: str) -> dict[str, dict[str, dict[str, float]]]:
    """The untrained student of each backbone of ``phase``: ``{backbone: {suite: {measure: value}}}``,
    the mean over its seeds (``bench.json``'s ``step0`` names their folders ``step0/<key>/``).
    A backbone with a seed not evaluated yet is left out (the next ``st-distill bench`` evaluates it)."""
    ws = Workspace(results)
    levels = {}
    for backbone, keys in bench.get("step0", {}).get(phase, {}).items():
        folders = [ws.step0(key) for key in keys]
        if not folders or not all(f.done.is_file() for f in folders):
            continue
        suites = [read_json(f.metrics)["suites"] for f in folders]
        levels[backbone] = {
            suite: {measure: float(np.mean([s[suite]["aggregate"][measure] for s in suites]))
                    for measure in suites[0][suite]["aggregate"] if all(measure in s[suite]["aggregate"] for s in suites)}
            for suite in suites[0] if all(suite in s for s in suites)
        }
    return levels


def step0_label(backbone: str, backbones: list[str]) -> str:
    """``student at step 0``, or ``student at step 0 (<backbone>)`` where the phase has several backbones."""
    return STEP0_LABEL if len(backbones) == 1 else f"{STEP0_LABEL} ({backbone})"


def collect_cells(results: str | os.PathLike, phase: str | None = None) -> tuple[dict, list[dict]]:
    """Reads ``bench.json`` and the ``metrics.json`` of every finished cell of one phase.

    Args:
        results: The results folder written by ``st-distill bench``.
        phase: The phase to report; default the last phase of the config.

    Returns:
        ``(bench, cells)``: the run's ``bench.json`` and the finished cells' metrics, sorted by
        (backbone, objective, seed, variant).

    Raises:
        FileNotFoundError: If ``results`` has no ``bench.json``.
        ValueError: For an unknown phase.
    """
    ws = Workspace(results)
    bench_path = ws.record
    if not bench_path.is_file():
        raise FileNotFoundError(f"{bench_path}: no such file (is {ws} a results folder of 'st-distill bench'?)")
    bench = read_json(bench_path)
    phases = [p["name"] for p in bench["phases"]]
    phase = phase or phases[-1]
    if phase not in phases:
        raise ValueError(f"unknown phase {phase!r} (phases of this run: {', '.join(phases)})")
    cells = []
    for done in sorted(ws.cells(phase).glob(f"*/*/*/{DONE}")):
        metrics = read_json(CellFolder(done.parent).metrics)
        metrics["folder"] = str(done.parent.relative_to(ws.root))
        cells.append(metrics)
    cells.sort(key=lambda m: (m["cell"]["backbone"], m["cell"]["objective"], m["cell"]["seed"], m["cell"].get("variant", "")))
    references = {
        label: {suite: read_json(ws.suite(suite) / file) for suite in bench["suites"] if (ws.suite(suite) / file).is_file()}
        for label, file in REFERENCES.items()
    }
    levels = step0_levels(ws, bench, phase)
    for backbone in bench.get("step0", {}).get(phase, {}).keys() - levels.keys():
        logger.warning("the untrained student of %s is not evaluated yet (no step-0 row): run st-distill bench on %s", backbone, ws)
    teacher = references.pop("teacher")
    references.update({step0_label(backbone, list(bench["step0"][phase])): by_suite for backbone, by_suite in levels.items()})
    bench["references"] = {**references, "teacher": teacher}
    return bench, cells


@dataclass
class ReportTable:
    """The report's numbers: one row per (backbone, objective), one column per (suite, measure).

    ``values[row][column]`` holds ``mean``, ``std`` (None for one seed), ``seeds``, and for
    non-baseline rows ``p``, ``p_holm``, ``diff`` and ``sig`` (+1 better, -1 worse, 0 not significant).
    ``references[label][column]`` holds the value of a reference row (``"first stage"``,
    ``"random order"``, ``"student at step 0"``, ``"teacher"``: see
    :func:`st_distill.bench.phases.evaluate.reference_metrics`). The share of the gap
    (:mod:`st_distill.bench.gap`) of the measure ``share_measure`` is ``values[row][(suite, share_measure)]["share"]``
    and ``reference_shares[label][suite]`` (``None`` where undefined); ``share_notes[suite]`` says why it
    is undefined on a suite (``None`` where defined).
    """

    rows: list[tuple[str, str]]
    columns: list[tuple[str, str]]
    values: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]]
    references: dict[str, dict[tuple[str, str], float]]
    baseline: str
    alpha: float
    share_measure: str | None = None
    share_notes: dict[str, str | None] = field(default_factory=dict)
    reference_shares: dict[str, dict[str, float | None]] = field(default_factory=dict)


def build_table(bench: dict, cells: list[dict], metrics: list[str] | None = None) -> ReportTable:
    """Aggregates cells over seeds and tests every objective against the baseline.

    Cells with a sweep ``variant`` (proxy phases) report each variant as its own objective row,
    named ``objective[variant]``.
    """
    report = bench["report"]
    metrics = metrics or report["metrics"]
    baseline, alpha = report["baseline"], report["alpha"]
    suites = list(bench["suites"])
    columns = [(suite, measure) for suite in suites for measure in metrics]
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for cell in cells:
        c = cell["cell"]
        name = c["objective"] + (f"[{c['variant']}]" if c.get("variant") else "")
        groups[(c["backbone"], name)].append(cell)
    objective_order = {name: i for i, name in enumerate(bench["objectives"])}
    rows = sorted(groups, key=lambda r: (bench["backbones"].index(r[0]) if r[0] in bench["backbones"] else 99,
                                         objective_order.get(r[1].split("[")[0], 99), r[1]))
    values: dict = {row: {} for row in rows}
    per_query: dict = {}
    for row in rows:
        for suite, measure in columns:
            seeds = [cell for cell in groups[row] if suite in cell["suites"] and measure in cell["suites"][suite]["aggregate"]]
            if not seeds:
                continue
            scores = [float(cell["suites"][suite]["aggregate"][measure]) for cell in seeds]
            values[row][(suite, measure)] = {
                "mean": float(np.mean(scores)),
                "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else None,
                "seeds": len(scores),
            }
            per_query[(row, suite, measure)] = seed_mean([cell["suites"][suite]["per_query"].get(measure, {}) for cell in seeds])
    if len(suites) > 1 and POOLED not in suites:
        columns += _pool_suites(rows, groups, suites, metrics, values, per_query)
    for backbone in dict.fromkeys(r[0] for r in rows):
        base_row = (backbone, baseline)
        for column in columns:
            family = [r for r in rows if r[0] == backbone and r != base_row and column in values[r]]
            base = per_query.get((base_row, *column))
            if not base or not family:
                continue
            tests = [paired_ttest(per_query[(r, *column)], base) for r in family]
            adjusted = holm([p for p, _ in tests])
            for r, (p, n), p_adj in zip(family, tests, adjusted):
                diff = values[r][column]["mean"] - values[base_row][column]["mean"]
                sig = (1 if diff > 0 else -1) if p_adj <= alpha and diff != 0 else 0
                values[r][column].update(p=p, p_holm=p_adj, queries=n, diff=diff, sig=sig)
    references = {
        label: {(suite, measure): float(by_suite[suite][measure]) for suite, measure in columns if measure in by_suite.get(suite, {})}
        for label, by_suite in bench.get("references", {}).items()
    }
    for measure in metrics:  # pooled: the suites' means weighted by their numbers of queries
        pooled_row = next((r for r in rows if (r, POOLED, measure) in per_query), None)
        if pooled_row is None:
            continue
        counts = {suite: len(per_query[(pooled_row, suite, measure)]) for suite in suites}
        for reference in references.values():
            if all((suite, measure) in reference and counts[suite] for suite in suites):
                reference[(POOLED, measure)] = sum(reference[(suite, measure)] * n for suite, n in counts.items()) / sum(counts.values())
    references = {label: row for label, row in references.items() if row}
    table = ReportTable(rows, columns, values, references, baseline, alpha)
    _add_shares(table, bench.get("main_metric") if bench.get("main_metric") in metrics else metrics[0])
    return table


def _add_shares(table: ReportTable, measure: str) -> None:
    """The share of the gap of ``measure`` per suite column, for every row and reference row."""
    table.share_measure = measure
    for suite, _ in (c for c in table.columns if c[1] == measure):
        column = (suite, measure)
        first_stage, teacher = (table.references.get(label, {}).get(column) for label in ("first stage", "teacher"))
        table.share_notes[suite] = gap_note(first_stage, teacher)
        for row in table.rows:
            if column in table.values[row]:
                table.values[row][column]["share"] = share_of_gap(table.values[row][column]["mean"], first_stage, teacher)
        for label, reference in table.references.items():
            if column in reference:
                table.reference_shares.setdefault(label, {})[suite] = share_of_gap(reference[column], first_stage, teacher)


def _pool_suites(rows: list, groups: dict, suites: list[str], metrics: list[str], values: dict, per_query: dict) -> list[tuple[str, str]]:
    """Adds the ``pooled`` column of every measure: each query of every suite counts once (its mean
    is over all the suites' queries; its tests pair them all), for rows evaluated on every suite."""
    columns = []
    for measure in metrics:
        for row in rows:
            if not all((row, suite, measure) in per_query for suite in suites):
                continue
            per_query[(row, POOLED, measure)] = {f"{suite}/{qid}": v for suite in suites for qid, v in per_query[(row, suite, measure)].items()}
            per_seed = [np.mean([v for suite in suites for v in cell["suites"][suite]["per_query"].get(measure, {}).values()])
                        for cell in groups[row] if all(suite in cell["suites"] for suite in suites)]
            values[row][(POOLED, measure)] = {"mean": float(np.mean(list(per_query[(row, POOLED, measure)].values()))),
                                              "std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None,
                                              "seeds": len(per_seed)}
        if any((POOLED, measure) in values[row] for row in rows):
            columns.append((POOLED, measure))
    return columns


def _cell_text(value: dict | None, latex: bool = False) -> str:
    if value is None:
        return "–" if not latex else "--"
    pm = "$\\pm$" if latex else " ± "
    text = f"{value['mean']:.4f}" + (f"{pm}{value['std']:.4f}" if value["std"] is not None else "")
    sig = value.get("sig", 0)
    if sig:
        text += ("$^{\\uparrow}$" if sig > 0 else "$^{\\downarrow}$") if latex else f" {UP if sig > 0 else DOWN}"
    return text


def _layout(table: ReportTable) -> list[tuple[str, tuple[str, str]]]:
    """The table's columns in order: ``("value", (suite, measure))``, each suite's main measure followed by ``("share", ...)``."""
    out = []
    for column in table.columns:
        out.append(("value", column))
        if column[1] == table.share_measure and column[0] in table.share_notes:
            out.append(("share", column))
    return out


def _header(kind: str, column: tuple[str, str]) -> str:
    """A :func:`_layout` column's heading: ``"<suite> <measure>"`` or ``"<suite> share"``."""
    return f"{column[0]} {column[1]}" if kind == "value" else f"{column[0]} share"


def _share_text(share: float | None, latex: bool = False) -> str:
    if share is None:
        return "--" if latex else "–"
    return f"{100 * share:.0f}" + ("\\%" if latex else "%")


def _row_texts(table: ReportTable, row: tuple[str, str] | None = None, label: str | None = None, latex: bool = False) -> list[str]:
    """One objective row's (``row``) or reference row's (``label``) cells, in :func:`_layout`'s order."""
    texts = []
    for kind, column in _layout(table):
        if label is not None:
            value = table.references[label].get(column)
            texts.append(_share_text(table.reference_shares.get(label, {}).get(column[0]), latex) if kind == "share"
                         else "--" if latex and value is None else "–" if value is None else f"{value:.4f}")
        else:
            value = table.values[row].get(column)
            texts.append(_share_text((value or {}).get("share"), latex) if kind == "share" else _cell_text(value, latex))
    return texts


def _share_notes(table: ReportTable) -> list[str]:
    """The footnote on the share columns: what they are, and why a suite has none."""
    if not table.share_notes:
        return []
    lines = [f"`share`: the share of the gap from the first stage to the teacher that a row closes on {table.share_measure}, "
             "(row - first stage) / (teacher - first stage): 0% at the first stage, 100% at the teacher."]
    notes = [f"- `{suite} share` is undefined (–): {note}." for suite, note in table.share_notes.items() if note is not None]
    return lines + ([""] + notes if notes else [])


def _markdown(table: ReportTable, title: str) -> str:
    head = ["backbone", "objective", *(_header(kind, c) for kind, c in _layout(table))]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label in table.references:
        lines.append(f"| {label} | – | " + " | ".join(_row_texts(table, label=label)) + " |")
    for row in table.rows:
        lines.append(f"| {row[0]} | {row[1]} | " + " | ".join(_row_texts(table, row)) + " |")
    lines += [
        "",
        f"{_shown(table)} {UP}/{DOWN}: significantly better/worse than "
        f"`{table.baseline}` on the same backbone (two-sided paired t-test on per-query values averaged over seeds, "
        f"Holm-Bonferroni corrected over the objectives, alpha = {table.alpha}). Reference rows: "
        "the first-stage run; a random order of its candidates (seeded per query), the floor; the untrained "
        "student, made as the cells make it (mean over seeds where its head is random); the teacher's own "
        "re-ranking of them, where the teacher can score new pairs."
        + (" `pooled`: every suite's queries together (means weighted by the suites' numbers of queries, tests paired "
           "over all of them)." if any(suite == POOLED for suite, _ in table.columns) else ""),
        *(["", *_share_notes(table)] if table.share_notes else []),
        "",
    ]
    return "\n".join(lines)


def _shown(table: ReportTable) -> str:
    """What the table's values are: a mean ± std over seeds, or (one seed) that seed's value."""
    spreads = [value["std"] is not None for row in table.values.values() for value in row.values() if value is not None]
    if spreads and not any(spreads):
        return "One seed per cell: the value of that seed."
    if all(spreads):
        return "Mean over seeds ± standard deviation across seeds."
    return "Mean over seeds ± standard deviation across seeds; a value without ±: the one seed of that cell."


def _csv(table: ReportTable) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["backbone", "objective", "suite", "measure", "mean", "std", "seeds", "diff", "p", "p_holm", "sig", "share"])
    fmt = lambda x: "" if x is None else f"{x:.6g}" if isinstance(x, float) else str(x)  # noqa: E731
    for label, reference in table.references.items():
        for column, value in reference.items():
            share = table.reference_shares.get(label, {}).get(column[0]) if column[1] == table.share_measure else None
            writer.writerow([label, "", *column, f"{value:.6f}", "", "", "", "", "", "", fmt(share)])
    for row in table.rows:
        for column in table.columns:
            v = table.values[row].get(column)
            if v is None:
                continue
            writer.writerow([*row, *column, f"{v['mean']:.6f}", "" if v["std"] is None else f"{v['std']:.6f}", v["seeds"],
                             fmt(v.get("diff")), fmt(v.get("p")), fmt(v.get("p_holm")), v.get("sig", ""), fmt(v.get("share"))])
    return out.getvalue()


def _json(table: ReportTable) -> dict[str, Any]:
    """``table.json``: the reference rows and the objective rows with their values per suite and measure,
    the share of the gap per suite (``null`` where undefined) and why it is undefined (``share_undefined``)."""
    def nested(values: dict[tuple[str, str], Any]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for (suite, measure), value in values.items():
            out.setdefault(suite, {})[measure] = value
        return out

    return {
        "share_measure": table.share_measure,
        "share_undefined": {suite: note for suite, note in table.share_notes.items() if note is not None},
        "references": [{"label": label, "values": nested(reference), "share": table.reference_shares.get(label, {})}
                       for label, reference in table.references.items()],
        "rows": [{"backbone": row[0], "objective": row[1],
                  "values": nested({c: {k: v for k, v in value.items() if k != "share"} for c, value in table.values[row].items()}),
                  "share": {c[0]: value.get("share") for c, value in table.values[row].items() if c[1] == table.share_measure}}
                 for row in table.rows],
        "baseline": table.baseline,
        "alpha": table.alpha,
    }


def _latex(table: ReportTable) -> str:
    def esc(text: str) -> str:
        return text.replace("_", "\\_").replace("&", "\\&").replace("%", "\\%").replace("#", "\\#")

    lines = [
        "\\begin{tabular}{ll" + "r" * len(_layout(table)) + "}",
        "\\toprule",
        "Backbone & Objective & " + " & ".join(esc(_header(kind, c)) for kind, c in _layout(table)) + " \\\\",
        "\\midrule",
    ]
    for label in table.references:
        lines.append(f"{esc(label[0].upper() + label[1:])} & -- & " + " & ".join(_row_texts(table, label=label, latex=True)) + " \\\\")
    if table.references:
        lines.append("\\midrule")
    previous = None
    for row in table.rows:
        if previous is not None and row[0] != previous:
            lines.append("\\midrule")
        previous = row[0]
        cells = " & ".join(_row_texts(table, row, latex=True))
        lines.append(f"{esc(row[0])} & {esc(row[1])} & {cells} \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def _bar_charts(table: ReportTable, measure: str, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    backbones = list(dict.fromkeys(r[0] for r in table.rows))
    objectives = list(dict.fromkeys(r[1] for r in table.rows))
    for suite in dict.fromkeys(s for s, _ in table.columns):
        column = (suite, measure)
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(objectives) * len(backbones)), 3.5))
        width = 0.8 / max(1, len(backbones))
        for b, backbone in enumerate(backbones):
            xs, heights, errors = [], [], []
            for o, objective in enumerate(objectives):
                value = table.values.get((backbone, objective), {}).get(column)
                if value is not None:
                    xs.append(o + (b - (len(backbones) - 1) / 2) * width)
                    heights.append(value["mean"])
                    errors.append(value["std"] or 0.0)
            ax.bar(xs, heights, width, yerr=errors, capsize=3, label=backbone)
        for label, reference in table.references.items():
            if column in reference:
                ax.axhline(reference[column], linewidth=1, label=label, **REFERENCE_STYLES.get(label.split(" (")[0], {}))
        ax.set_xticks(range(len(objectives)), objectives, rotation=30, ha="right")
        ax.set_ylabel(measure)
        ax.set_title(suite)
        ax.legend(fontsize="small")
        fig.tight_layout()
        path = folder / f"{suite}.png"
        save_png(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def learning_curves(results: str | os.PathLike, cells: list[dict], measure: str, folder: Path, objectives: list[str] | None = None,
                    step0: dict[str, dict[str, dict[str, float]]] | None = None) -> list[Path]:
    """Draws ``<folder>/<suite>.png`` for every suite with learning-curve points (``curve.jsonl`` of the cells).

    ``measure`` against training pairs, one line per objective (the mean over seeds at the pair
    counts every seed reached, in the order of ``objectives`` when given), one panel per backbone;
    the first stage, random order and teacher of ``eval/<suite>/`` as horizontal lines, those that exist,
    and the backbone's untrained student where ``step0`` (:func:`step0_levels`) has it: the level
    its curves start from.

    Returns:
        The PNG files written (none when no cell has a curve).
    """
    ws = Workspace(results)
    lines: dict[str, dict[str, dict[str, list[dict[int, float]]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for cell in cells:
        c = cell["cell"]
        label = c["objective"] + (f"[{c['variant']}]" if c.get("variant") else "")
        by_suite: dict[str, dict[int, float]] = defaultdict(dict)
        for point in read_curve(CellFolder(ws / cell["folder"]).curve):
            for suite, values in point["suites"].items():
                if measure in values:
                    by_suite[suite][int(point["pairs"])] = float(values[measure])
        for suite, points in by_suite.items():
            lines[suite][c["backbone"]][label].append(points)
    if not lines:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rank = {name: i for i, name in enumerate(objectives or [])}
    written = []
    for suite, backbones in sorted(lines.items()):
        fig, axes = plt.subplots(1, len(backbones), figsize=(7.5 * len(backbones), 4), squeeze=False)
        for ax, (backbone, by_label) in zip(axes[0], sorted(backbones.items())):
            for label, runs in sorted(by_label.items(), key=lambda item: (rank.get(item[0].split("[")[0], len(rank)), item[0])):
                pairs = sorted(set.intersection(*(set(r) for r in runs)))
                ax.plot(pairs, [np.mean([r[p] for r in runs]) for p in pairs], marker="o", markersize=3, label=label)
            for text, file in REFERENCES.items():
                path = ws.suite(suite) / file
                value = read_json(path).get(measure) if path.is_file() else None
                if value is not None:
                    ax.axhline(value, color="gray", linestyle=REFERENCE_STYLES[text]["linestyle"], linewidth=1.2,
                               label=f"{text} {value:.3f}")
            value = (step0 or {}).get(backbone, {}).get(suite, {}).get(measure)
            if value is not None:
                ax.axhline(value, linewidth=1.2, label=f"{STEP0_LABEL} {value:.3f}", **REFERENCE_STYLES[STEP0_LABEL])
            ax.set_title(f"{suite}: {backbone}")
            ax.set_xlabel("training pairs")
            ax.set_ylabel(measure)
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        path = folder / f"{suite}.png"
        save_png(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def write_report(results: str | os.PathLike, phase: str | None = None, metrics: list[str] | None = None) -> dict[str, Path]:
    """Writes the report of one phase under ``<results>/report/`` and returns the files written.

    Args:
        results: The results folder of ``st-distill bench``.
        phase: The phase to report (default: the last).
        metrics: Measures to show (default: the config's ``report.metrics``); each must have been
            evaluated (``eval.metrics``).

    Returns:
        ``{"markdown": ..., "csv": ..., "latex": ..., "json": ..., "significance": ..., "<suite>": png, "loss": png,
        "curve:<suite>": png}``.
    """
    ws = Workspace(results)
    bench, cells = collect_cells(ws, phase)
    phase = phase or bench["phases"][-1]["name"]
    table = build_table(bench, cells, metrics)
    folder = ws.report
    suffix = "" if phase == bench["phases"][-1]["name"] else f"_{phase}"
    title = f"{bench['name']}: phase {phase}, {len(cells)} cell(s)"
    written: dict[str, Path] = {}
    for key, name, text in (("markdown", f"table{suffix}.md", _markdown(table, title)),
                            ("csv", f"table{suffix}.csv", _csv(table)),
                            ("latex", f"table{suffix}.tex", _latex(table))):
        with atomic_write(folder / name) as f:
            f.write(text)
        written[key] = folder / name
    tests = [
        {"backbone": row[0], "objective": row[1], "suite": s, "measure": m, "baseline": table.baseline,
         **{k: v for k, v in table.values[row][(s, m)].items() if k in ("diff", "p", "p_holm", "queries", "sig")}}
        for row in table.rows for (s, m) in table.columns
        if "p" in table.values[row].get((s, m), {})
    ]
    write_json(folder / f"table{suffix}.json", _json(table))
    written["json"] = folder / f"table{suffix}.json"
    write_json(folder / f"significance{suffix}.json", tests)
    written["significance"] = folder / f"significance{suffix}.json"
    if cells:
        main = (metrics or bench["report"]["metrics"])[0]
        for path in _bar_charts(table, main, folder / (f"charts{suffix}" if suffix else "charts")):
            written[path.stem] = path
        loss = loss_curves(ws, cells, phase, folder, bench["objectives"])
        if loss is not None:
            written["loss"] = loss
        for path in learning_curves(ws, cells, main, folder / (f"curves{suffix}" if suffix else "curves"), bench["objectives"],
                                    step0_levels(ws, bench, phase)):
            written[f"curve:{path.stem}"] = path
    return written
