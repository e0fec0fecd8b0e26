"""Retrieval metrics of runs against qrels, computed by ir_measures (pytrec_eval underneath).

No metric is computed here by hand: measures are parsed by name with
``ir_measures.parse_measure`` (any name it knows: ``nDCG@10``, ``RR(rel=2)@10``, ``AP``,
``R@100``, ``P@5``, ``Judged@10`` ...) and evaluated with ``ir_measures.iter_calc``.

Semantics, as trec_eval's:

- graded qrels: ``nDCG`` uses the grades as gains; binary measures (RR, AP, R, P, ...)
  count a document as relevant when its grade is at least ``rel_level`` (trec_eval's
  ``-l``; 2 for TREC DL passage). ``rel_level`` is added to every measure that takes a
  ``rel`` parameter and does not set one itself, except ``NumRet``, where ``rel`` would
  change what is counted;
- queries of the run without any judgement are left out of the averages and counted
  (``unjudged``); ir_measures would ignore them silently;
- judged queries missing from the run are left out too (trec_eval's default), and
  counted; ``missing_as_zero=True`` scores them 0 instead (trec_eval ``-c``);
- unjudged documents count as not relevant;
- grades are integers within :data:`~st_distill.data.formats.GRADE_LIMIT` of 0 (trec_eval's
  memory and time grow with the highest grade; past 2^63 pytrec_eval fails with a
  ``SystemError``); others are a ``ValueError`` naming the query and document.

Per-query values are kept, for significance tests between runs.
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ir_measures

from st_distill.data.formats import GRADE_LIMIT, Qrels

DEFAULT_MEASURES: tuple[str, ...] = ("nDCG@10", "RR@10", "AP", "R@100")

# Measures whose ``rel`` parameter filters what is counted rather than setting the relevance threshold.
_REL_NOT_A_THRESHOLD = {"NumRet"}


def parse_measures(measures: Sequence[str] | None = None, rel_level: int = 1) -> list[Any]:
    """Parses measure names with ir_measures and applies the relevance threshold to binary measures.

    Args:
        measures: Measure names in ir_measures syntax; ``None`` gives :data:`DEFAULT_MEASURES`.
        rel_level: Minimum grade counted as relevant by binary measures (trec_eval ``-l``).
            A measure that names its own ``rel`` (``RR(rel=3)@10``) keeps it.

    Returns:
        ir_measures measure objects, in the given order, without repeats.

    Raises:
        ValueError: On a name ir_measures does not know, or a ``rel_level`` below 1.
    """
    return list(dict.fromkeys(_measures_by_name(measures, rel_level).values()))


def _measures_by_name(measures: Sequence[str] | None, rel_level: int) -> dict[str, Any]:
    """``{name as given: ir_measures measure with the threshold applied}``, in the given order."""
    if rel_level < 1:
        raise ValueError(f"rel_level must be at least 1, got {rel_level}")
    parsed: dict[str, Any] = {}
    for name in measures if measures is not None else DEFAULT_MEASURES:
        try:
            measure = ir_measures.parse_measure(name) if isinstance(name, str) else name
        except (NameError, ValueError, SyntaxError, TypeError) as exc:
            raise ValueError(f"unknown measure {name!r} ({exc}); use ir_measures names such as nDCG@10, RR@10, AP, R@100") from exc
        if (
            rel_level != 1
            and "rel" in measure.SUPPORTED_PARAMS
            and "rel" not in measure.params
            and measure.NAME not in _REL_NOT_A_THRESHOLD
        ):
            measure = measure(rel=rel_level)
        parsed.setdefault(str(name), measure)
    if not parsed:
        raise ValueError("no measure given")
    return parsed


def check_grades(qrels: Qrels) -> None:
    """Raises ``ValueError`` naming the first judgement whose grade is not an integer within
    :data:`~st_distill.data.formats.GRADE_LIMIT` of 0 (what trec_eval can evaluate)."""
    for qid, docs in qrels.items():
        for docid, grade in docs.items():
            if not isinstance(grade, numbers.Integral) or abs(int(grade)) > GRADE_LIMIT:
                raise ValueError(
                    f"qrels: grade {grade!r} of document {docid!r} for query {qid!r} is not an integer "
                    f"from {-GRADE_LIMIT} to {GRADE_LIMIT}"
                )


@dataclass
class Evaluation:
    """Metrics of one run.

    Attributes:
        aggregate: ``{measure name: value}``, averaged over the evaluated queries.
        per_query: ``{measure name: {qid: value}}`` for every evaluated query.
        queries: Counts: ``evaluated`` (averaged over), ``unjudged`` (in the run, no judgement:
            left out), ``judged_not_in_run`` (judged, absent from the run: left out, or scored 0
            with ``missing_as_zero``).
        unjudged: Ids of the run's queries without judgements.
        judged_not_in_run: Ids of judged queries absent from the run.
    """

    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]
    queries: dict[str, int]
    unjudged: list[str] = field(default_factory=list)
    judged_not_in_run: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with every field."""
        return {
            "aggregate": self.aggregate,
            "queries": self.queries,
            "unjudged": self.unjudged,
            "judged_not_in_run": self.judged_not_in_run,
            "per_query": self.per_query,
        }


def evaluate(
    run: Mapping[str, Mapping[str, float]],
    qrels: Qrels,
    measures: Sequence[str] | None = None,
    rel_level: int = 1,
    missing_as_zero: bool = False,
    given_names: bool = False,
) -> Evaluation:
    """Evaluates a run against qrels with ir_measures.

    Args:
        run: ``{qid: {docid: score}}``.
        qrels: ``{qid: {docid: grade}}``.
        measures: ir_measures names; ``None`` gives nDCG@10, RR@10, AP, R@100.
        rel_level: Minimum grade counted as relevant by binary measures (2 for TREC DL passage).
        missing_as_zero: Score judged queries absent from the run 0 (trec_eval ``-c``) instead of
            leaving them out.
        given_names: Key the results by the names as given (``RR@10``) instead of ir_measures'
            spelling with the threshold applied (``RR(rel=2)@10``); names that parse to the same
            measure each get its values.

    Returns:
        An :class:`Evaluation` with the averages, the per-query values and the query counts.

    Raises:
        ValueError: If the run is empty, no query of the run is judged (and ``missing_as_zero``
            is off), a measure name is unknown, or a grade is not an integer within
            :data:`~st_distill.data.formats.GRADE_LIMIT` of 0.
    """
    if not run:
        raise ValueError("the run is empty: nothing to evaluate")
    by_name = _measures_by_name(measures, rel_level)
    parsed = list(dict.fromkeys(by_name.values()))
    keys = {name: str(m) for name, m in by_name.items()} if given_names else {str(m): str(m) for m in parsed}
    unjudged = [qid for qid in run if qid not in qrels]
    missing = [qid for qid in qrels if qid not in run]
    evaluated_qids = [qid for qid in run if qid in qrels] + (missing if missing_as_zero else [])
    if not evaluated_qids:
        raise ValueError(
            f"none of the run's {len(run)} queries has a judgement in the qrels "
            f"(run query ids look like {next(iter(run))!r}, qrels ids like {next(iter(qrels), None)!r})"
        )
    used_qrels = {qid: qrels[qid] for qid in evaluated_qids}
    check_grades(used_qrels)
    used_run = {qid: dict(run[qid]) for qid in evaluated_qids if qid in run}
    per_measure: dict[str, dict[str, float]] = {str(m): {} for m in parsed}
    aggregators = {str(m): m.aggregator() for m in parsed}
    for metric in ir_measures.iter_calc(parsed, used_qrels, used_run):
        name = str(metric.measure)
        per_measure[name][metric.query_id] = float(metric.value)
        aggregators[name].add(metric.value)
    return Evaluation(
        aggregate={key: float(aggregators[name].result()) for key, name in keys.items()},
        per_query={
            key: {qid: per_measure[name][qid] for qid in evaluated_qids if qid in per_measure[name]}
            for key, name in keys.items()
        },
        queries={"evaluated": len(evaluated_qids), "unjudged": len(unjudged), "judged_not_in_run": len(missing)},
        unjudged=unjudged,
        judged_not_in_run=missing,
    )


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """Reads back a metrics file the evaluation wrote (``metrics.json``, a reference row's ``first_stage.json``...).

    Args:
        path: The JSON file.

    Returns:
        Its JSON object.

    Raises:
        FileNotFoundError: When there is no such file.
        ValueError: Naming the file (and the line and column) when it is not valid JSON, or not a JSON object.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}, line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg}); "
            "the file is damaged: delete it to compute it again"
        ) from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of metrics, found {type(data).__name__}")
    return data
