"""The bench report, rebuilt from a results folder alone.

:func:`write_report` reads ``bench.json`` and every finished cell's ``metrics.json`` and
``training_log.jsonl`` under a results folder (the runner's layout, see :mod:`st_distill.bench.runner`)
and writes into ``<results>/report/``:

- ``table.md``, ``table.csv``, ``table.tex``: rows backbone x objective, one column per evaluation
  suite and measure, mean over seeds ± standard deviation (sample, over seeds). Each objective is
  compared with the baseline objective (default ``bce``) of the same backbone on the same suite:
  a two-sided paired t-test on per-query values averaged over seeds, Holm-Bonferroni corrected
  over the objectives of that (backbone, suite, measure); ``▲``/``▼`` mark a significant
  improvement/degradation at level ``alpha``. A first-stage row gives the re-ranked run's
  starting point where it was evaluated. With two suites or more, a ``pooled`` column per measure
  takes every suite's queries together (its mean weights the suites by their numbers of queries;
  its tests pair all the queries), the study's way to test one claim over several sets.
- ``significance.json``: every test (raw and adjusted p-value, queries, difference).
- ``<suite>.png``: a bar chart per suite (main measure, error bars = std over seeds).
- ``loss_<phase>.png``: training-loss curves (mean over seeds) per backbone.
- ``curves/<suite>.png`` (cells trained with ``[eval.curve]``): the learning curves, the main
  measure against training pairs, one line per objective (mean over seeds), one panel per
  backbone, with the first stage, a random order and the teacher as horizontal lines where
  ``eval/<suite>/`` has them (``first_stage.json``, ``random.json``, ``teacher.json``).

Outputs contain no timestamps, so ``st-distill report DIR`` regenerates them byte for byte.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from st_distill.bench.phases.evaluate import REFERENCES
from st_distill.bench.workspace import DONE, CellFolder, Workspace

#: The column of every suite's queries together (with two suites or more).
POOLED = "pooled"
from st_distill.bench.stats import holm, paired_ttest, seed_mean
from st_distill.io import atomic_write, read_json, write_json

logger = logging.getLogger(__name__)

__all__ = ["ReportTable", "collect_cells", "build_table", "learning_curves", "write_report"]

UP, DOWN = "▲", "▼"
#: How the reference rows are drawn as horizontal lines in the charts.
REFERENCE_STYLES = {
    "first stage": {"color": "gray", "linestyle": "--"},
    "random order": {"color": "tab:red", "linestyle": ":"},
    "teacher": {"color": "black", "linestyle": "-."},
}


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
    bench["references"] = {
        label: {suite: read_json(ws.suite(suite) / file) for suite in bench["suites"] if (ws.suite(suite) / file).is_file()}
        for label, file in REFERENCES.items()
    }
    return bench, cells


@dataclass
class ReportTable:
    """The report's numbers: one row per (backbone, objective), one column per (suite, measure).

    ``values[row][column]`` holds ``mean``, ``std`` (None for one seed), ``seeds``, and for
    non-baseline rows ``p``, ``p_holm``, ``diff`` and ``sig`` (+1 better, -1 worse, 0 not significant).
    ``references[label][column]`` holds the value of a reference row (``"first stage"``,
    ``"random order"``, ``"teacher"``: see :func:`st_distill.bench.phases.evaluate.reference_metrics`).
    """

    rows: list[tuple[str, str]]
    columns: list[tuple[str, str]]
    values: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]]
    references: dict[str, dict[tuple[str, str], float]]
    baseline: str
    alpha: float


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
    return ReportTable(rows, columns, values, references, baseline, alpha)


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


def _markdown(table: ReportTable, title: str) -> str:
    head = ["backbone", "objective", *(f"{suite} {measure}" for suite, measure in table.columns)]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, reference in table.references.items():
        lines.append(f"| {label} | – | " + " | ".join(f"{reference[c]:.4f}" if c in reference else "–" for c in table.columns) + " |")
    for row in table.rows:
        lines.append(f"| {row[0]} | {row[1]} | " + " | ".join(_cell_text(table.values[row].get(c)) for c in table.columns) + " |")
    lines += [
        "",
        f"{_shown(table)} {UP}/{DOWN}: significantly better/worse than "
        f"`{table.baseline}` on the same backbone (two-sided paired t-test on per-query values averaged over seeds, "
        f"Holm-Bonferroni corrected over the objectives, alpha = {table.alpha}). Reference rows: "
        "the first-stage run; a random order of its candidates (seeded per query), the floor; the teacher's own "
        "re-ranking of them, where the teacher can score new pairs."
        + (" `pooled`: every suite's queries together (means weighted by the suites' numbers of queries, tests paired "
           "over all of them)." if any(suite == POOLED for suite, _ in table.columns) else ""),
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
    writer.writerow(["backbone", "objective", "suite", "measure", "mean", "std", "seeds", "diff", "p", "p_holm", "sig"])
    fmt = lambda x: "" if x is None else f"{x:.6g}" if isinstance(x, float) else str(x)  # noqa: E731
    for label, reference in table.references.items():
        for column, value in reference.items():
            writer.writerow([label, "", *column, f"{value:.6f}", "", "", "", "", "", ""])
    for row in table.rows:
        for column in table.columns:
            v = table.values[row].get(column)
            if v is None:
                continue
            writer.writerow([*row, *column, f"{v['mean']:.6f}", "" if v["std"] is None else f"{v['std']:.6f}", v["seeds"],
                             fmt(v.get("diff")), fmt(v.get("p")), fmt(v.get("p_holm")), v.get("sig", "")])
    return out.getvalue()


def _latex(table: ReportTable) -> str:
    def esc(text: str) -> str:
        return text.replace("_", "\\_").replace("&", "\\&").replace("%", "\\%").replace("#", "\\#")

    lines = [
        "\\begin{tabular}{ll" + "r" * len(table.columns) + "}",
        "\\toprule",
        "Backbone & Objective & " + " & ".join(esc(f"{s} {m}") for s, m in table.columns) + " \\\\",
        "\\midrule",
    ]
    for label, reference in table.references.items():
        lines.append(f"{label.capitalize()} & -- & " + " & ".join(
            f"{reference[c]:.4f}" if c in reference else "--" for c in table.columns) + " \\\\")
    if table.references:
        lines.append("\\midrule")
    previous = None
    for row in table.rows:
        if previous is not None and row[0] != previous:
            lines.append("\\midrule")
        previous = row[0]
        cells = " & ".join(_cell_text(table.values[row].get(c), latex=True) for c in table.columns)
        lines.append(f"{esc(row[0])} & {esc(row[1])} & {cells} \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def _save_png(fig, path: Path) -> None:
    buffer = io.BytesIO()
    # No "Software"/date metadata: the same numbers give the same bytes.
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    with atomic_write(path, "wb") as f:
        f.write(buffer.getvalue())


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
                ax.axhline(reference[column], linewidth=1, label=label, **REFERENCE_STYLES.get(label, {}))
        ax.set_xticks(range(len(objectives)), objectives, rotation=30, ha="right")
        ax.set_ylabel(measure)
        ax.set_title(suite)
        ax.legend(fontsize="small")
        fig.tight_layout()
        path = folder / f"{suite}.png"
        _save_png(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def _loss_curves(ws: Workspace, cells: list[dict], phase: str, folder: Path, objectives: list[str]) -> Path | None:
    """One panel per (backbone, objective): the training loss against steps (mean over seeds), with
    the loss of a constant-score student marked (:func:`st_distill.bench.levels.constant_score_level`).
    Objectives have their own y-axes: their losses live on scales that differ by orders of magnitude."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from st_distill.bench.levels import constant_score_level

    curves: dict[tuple[str, str], list[dict[int, float]]] = defaultdict(list)
    loss_args: dict[str, dict] = {}
    for cell in cells:
        log = CellFolder(ws / cell["folder"]).training_log
        if not log.is_file():
            continue
        try:
            with open(log, encoding="utf-8") as f:
                points = {int(r["step"]): float(r["loss"]) for r in map(json.loads, f) if "loss" in r and math.isfinite(r["loss"])}
        except json.JSONDecodeError as exc:
            raise ValueError(f"{log}: not valid JSON lines ({exc}); the file is corrupt: delete or repair it") from None
        c = cell["cell"]
        curves[(c["backbone"], c["objective"] + (f"[{c['variant']}]" if c.get("variant") else ""))].append(points)
        loss_args.setdefault(c["objective"], cell.get("settings", {}).get("loss", {}))
    if not curves:
        return None
    rank = {name: i for i, name in enumerate(objectives)}
    curves = dict(sorted(curves.items(), key=lambda item: (item[0][0], rank.get(item[0][1].split("[")[0], len(rank)), item[0][1])))
    columns = min(3, len(curves))
    rows = math.ceil(len(curves) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    for ax, ((backbone, objective), runs) in zip(axes.flat, curves.items()):
        steps = sorted(set.intersection(*(set(r) for r in runs)))
        ax.plot(steps, [np.mean([r[s] for r in runs]) for s in steps], color="tab:blue", label="training loss")
        name = objective.split("[")[0]
        level = constant_score_level(name, ws.data(name), loss_args.get(name))
        if level is not None:
            ax.axhline(level, color="gray", linestyle="--", linewidth=1, label=f"constant score ({level:.3g})")
        ax.set_title(f"{objective} ({backbone})", fontsize="medium")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(fontsize="x-small")
    for ax in list(axes.flat)[len(curves):]:
        ax.set_visible(False)
    fig.tight_layout()
    path = folder / f"loss_{phase}.png"
    _save_png(fig, path)
    plt.close(fig)
    return path


def learning_curves(results: str | os.PathLike, cells: list[dict], measure: str, folder: Path, objectives: list[str] | None = None) -> list[Path]:
    """Draws ``<folder>/<suite>.png`` for every suite with learning-curve points (``curve.jsonl`` of the cells).

    ``measure`` against training pairs, one line per objective (the mean over seeds at the pair
    counts every seed reached, in the order of ``objectives`` when given), one panel per backbone;
    the first stage, random order and teacher of ``eval/<suite>/`` as horizontal lines, those that exist.

    Returns:
        The PNG files written (none when no cell has a curve).
    """
    from st_distill.bench.curves import read_curve

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
            ax.set_title(f"{suite}: {backbone}")
            ax.set_xlabel("training pairs")
            ax.set_ylabel(measure)
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        path = folder / f"{suite}.png"
        _save_png(fig, path)
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
        ``{"markdown": ..., "csv": ..., "latex": ..., "significance": ..., "<suite>": png, "loss": png,
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
    write_json(folder / f"significance{suffix}.json", tests)
    written["significance"] = folder / f"significance{suffix}.json"
    if cells:
        main = (metrics or bench["report"]["metrics"])[0]
        for path in _bar_charts(table, main, folder / (f"charts{suffix}" if suffix else "charts")):
            written[path.stem] = path
        loss = _loss_curves(ws, cells, phase, folder, bench["objectives"])
        if loss is not None:
            written["loss"] = loss
        for path in learning_curves(ws, cells, main, folder / (f"curves{suffix}" if suffix else "curves"), bench["objectives"]):
            written[f"curve:{path.stem}"] = path
    return written
