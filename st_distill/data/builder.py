"""The dataset builder: join queries, texts, judgements, negatives and teacher scores into the
``datasets.Dataset`` that one registry objective trains on.

Which columns each objective needs comes from its :class:`~st_distill.objectives.DatasetFormat`
in :mod:`st_distill.objectives` (the single source of truth); the builder follows the format's
``kind`` (pointwise / ntuple / listwise), ``label_column``, ``teacher`` and ``positive_first``:

============  ==============================================  ===========================================
kind          columns                                          built from
============  ==============================================  ===========================================
pointwise     ``query, document, label``                       qrels positives (1.0) + negatives (0.0),
                                                               or teacher triples (each gives both)
pointwise     ``query, document, score`` (``mse``)             each query's top n + 1 candidates with their
                                                               teacher scores, or teacher triples
ntuple        ``query, positive, negative_1..n [, scores]``    qrels positives + n negatives per row
                                                               (+ teacher scores), or teacher triples
listwise      ``query, docs, scores``                          a ranking / candidate run with teacher
                                                               scores; ``positive_first`` formats put the
                                                               relevant document first, then negatives
============  ==============================================  ===========================================

Two ways in:

- **In-memory sources** (``qrels``, ``negatives``, ``candidates``, ``teacher_scores``): any
  objective, up to millions of rows.
- **Teacher triples** (``triples``: Hofstätter's ``pos_score neg_score qid pos_pid neg_pid``
  file or its table): MS MARCO scale (40M rows) for ``marginmse``, ``hinge``, ``infonce``
  (one negative) and ``bce``. The file streams through Arrow; rows never become Python objects.

With ``lazy=True`` the dataset holds row numbers into memory-mapped
:class:`~st_distill.data.store.TextStore` files instead of texts, and a ``datasets``
transform (:class:`LazyTexts`) puts the texts in on access, so 40M MarginMSE rows take
about 1 GB instead of tens. ``CrossEncoderTrainer`` reads such a dataset like any other: the
column names are the format's, only their stored type differs. :func:`save_dataset` and
:func:`load_built_dataset` keep the link to the stores.

With ``ids=True`` the dataset holds string ids in sentence-transformers' ``util.resolve_ids``
naming (``query_id``, ``document_id``, ``positive_id``, ``negative_1_id``, ``doc_ids``; labels
unchanged) and no texts: ``resolve_ids(..., output_format="lists")`` (or
:func:`st_distill.data.ids.with_texts`) joins them on access and gives back the format's columns.
The other way, an id dataset prepared for ``resolve_ids`` and its lookup datasets can be given as
``candidates`` / ``teacher_scores`` and ``queries`` / ``corpus`` (see :mod:`st_distill.data.ids`).

Every build returns a :class:`BuildReport` (queries, rows, what was skipped and why).
Results are deterministic for a seed: sampling uses one generator per query seeded from
``(seed, qid)``.

Example:
    ::

        from st_distill.data.builder import build_dataset, save_dataset
        from st_distill.data.formats import load_beir, read_trec_run
        from st_distill.data.negatives import negatives_from_run

        beir = load_beir("scifact", split="train")
        negatives = negatives_from_run(read_trec_run("bm25.trec"), beir.qrels, k=7, depth=100, strategy="uniform")
        dataset, report = build_dataset("infonce", beir.queries, beir.corpus, qrels=beir.qrels, negatives=negatives)
        save_dataset(dataset, report, "data/scifact-infonce")
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from st_distill.data.formats import Qrels, Run, ranked
from st_distill.data.ids import id_columns, run_from_ids, texts_from_lookup
from st_distill.data.negatives import Negatives, query_rng, relevant
from st_distill.data.normalize import (
    Normalization,
    check_normalization,
    check_teacher_scores,
    normalize_table,
    run_table,
    scores_provenance,
)
from st_distill.data.store import TextStore, lookup_texts
from st_distill.data.teacher_files import id_positions, read_teacher_triples
from st_distill.io import write_json

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset

    from st_distill.objectives import DatasetFormat, Objective

logger = logging.getLogger(__name__)

LAZY_FILE = "lazy_texts.json"
REPORT_FILE = "report.json"
DATASET_FILE = "dataset.arrow"


@dataclass
class BuildReport:
    """What a build produced and what it left out.

    Attributes:
        objective: The registry objective the dataset is for.
        kind: Its format kind (``pointwise``, ``ntuple``, ``listwise``).
        columns: The dataset's columns, in order.
        queries: Distinct queries with at least one row.
        rows: Rows in the dataset.
        skipped: ``{reason: count}``: queries, rows, documents or input lines left out, e.g.
            ``"query without text"``, ``"fewer than 7 negatives"``, ``"missing teacher score"``,
            ``"unknown passage id"`` (input lines skipped with ``skip_invalid``).
        n_negatives: Negatives per row (ntuple), documents per list - 1 (listwise), per positive (pointwise).
        seed: The sampling seed.
        lazy: Whether texts are joined lazily (row numbers into text stores).
        ids: Whether the dataset holds string ids (``resolve_ids`` naming) instead of texts.
        sources: Where the data came from (kinds of inputs, file names).
        normalize: How teacher scores became targets (see :mod:`st_distill.data.normalize`);
            ``None`` when the objective trains on labels only.
        teacher: The teachers behind the scores when their table records them (scores from a teacher
            cache): ``{"ensemble", "teachers", "fingerprints"}``.
        seconds: Wall time of the build.
    """

    objective: str
    kind: str
    columns: list[str]
    queries: int = 0
    rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    n_negatives: int | None = None
    seed: int = 0
    lazy: bool = False
    ids: bool = False
    sources: dict[str, Any] = field(default_factory=dict)
    normalize: str | None = None
    teacher: dict[str, Any] | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the report as JSON, atomically."""
        write_json(path, self.to_dict())


class LazyTexts:
    """A ``datasets`` transform that replaces row numbers by texts from :class:`TextStore` files.

    Args:
        queries: The store the ``query`` column points into.
        corpus: The store every other text column points into.
        text_columns: Columns holding one row number per example.
        list_columns: Columns holding a list of row numbers per example (``docs``).
    """

    def __init__(self, queries: TextStore, corpus: TextStore, text_columns: Sequence[str], list_columns: Sequence[str] = ()) -> None:
        self.queries = queries
        self.corpus = corpus
        self.text_columns = list(text_columns)
        self.list_columns = list(list_columns)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        out = dict(batch)
        for name in self.text_columns:
            store = self.queries if name == "query" else self.corpus
            out[name] = store.texts(batch[name])
        for name in self.list_columns:
            lengths = [len(rows) for rows in batch[name]]
            flat = self.corpus.texts([row for rows in batch[name] for row in rows])
            bounds = np.cumsum([0, *lengths])
            out[name] = [flat[bounds[i] : bounds[i + 1]] for i in range(len(lengths))]
        return out

    def config(self) -> dict[str, Any]:
        return {
            "queries": str(self.queries.path),
            "corpus": str(self.corpus.path),
            "text_columns": self.text_columns,
            "list_columns": self.list_columns,
        }


def _format(objective: str | Objective) -> tuple[str, DatasetFormat, Objective]:
    from st_distill.objectives import get_objective

    objective = get_objective(objective) if isinstance(objective, str) else objective
    return objective.name, objective.dataset_format, objective


def _sample(pool: list[str], n: int, rng: np.random.Generator) -> list[str]:
    """``n`` items of ``pool`` drawn uniformly without replacement, kept in pool order."""
    if len(pool) <= n:
        return list(pool)
    return [pool[i] for i in np.sort(rng.choice(len(pool), size=n, replace=False))]


def _as_run(source: Run | Dataset | IterableDataset | None) -> Run | None:
    """A run from a run or an id dataset (``resolve_ids`` style)."""
    if source is None or isinstance(source, Mapping):
        return source
    return run_from_ids(source)


def _as_scores(source: Any) -> pa.Table | None:
    """Teacher scores as a ``(qid, docid, score)`` table (:func:`~st_distill.data.normalize.scores_table`):
    a table or any Arrow stream (e.g. :class:`~st_distill.teachers.TeacherScores`) as it is, a run
    or an id dataset converted."""
    if source is None:
        return None
    if isinstance(source, pa.Table):
        return source
    if hasattr(source, "__arrow_c_stream__"):  # the Arrow PyCapsule protocol
        return pa.table(source)
    return run_table(_as_run(source))


def _as_texts(texts: Mapping[str, str] | Any) -> Mapping[str, str]:
    """``{id: text}`` as given (a dict or a TextStore), or read from a ``resolve_ids`` lookup dataset."""
    return texts if isinstance(texts, Mapping) else texts_from_lookup(texts)


def _targets(
    name: str, fmt: DatasetFormat, normalize: Normalization | None, scores: pa.Table | None, candidates: Run | None
) -> tuple[dict[tuple[str, str], float] | None, str | None]:
    """``{(qid, docid): target}`` the rows' scores are read from, normalised, and the method applied
    (``None`` when the format trains on labels only). Without teacher scores, a ranking format reads
    the candidates' own scores (e.g. LLM pseudo-scores): those are normalised, the candidates' order
    is kept. Here scores become labels, so here they are checked (see :func:`_check_targets`)."""
    recorded = scores_provenance(scores)[0] if scores is not None else None
    method = check_normalization(normalize or recorded or "raw")
    source, what = (scores, "teacher_scores") if scores is not None else (None, "candidates")
    if fmt.teacher is None:
        if normalize not in (None, "raw"):
            raise ValueError(f"{name}: trains on labels, not teacher scores; normalize={normalize!r} does not apply")
        method = None
    elif source is None and candidates is not None:
        source = run_table(candidates)
    if source is None:
        return None, method
    if method is not None:
        check_teacher_scores(source, f"{name}: {what}")
        if method == "raw" and fmt.teacher == "scores" and fmt.kind != "listwise" and scores is not None:
            _warn_if_squashed(name, source)
        source = normalize_table(source, method)
    keys = zip(source.column("qid").to_pylist(), source.column("docid").to_pylist())
    return dict(zip(keys, source.column("score").to_pylist())), method


def _warn_if_squashed(name: str, scores: pa.Table) -> None:
    """Warns when every raw teacher score lies in [0, 1]: sigmoid-squashed, where MarginMSE and MSE expect logits."""
    values = scores.column("score").to_numpy()
    finite = values[np.isfinite(values)]
    if finite.size > 1 and finite.min() >= 0.0 and finite.max() <= 1.0:
        logger.warning(
            "%s: all %d teacher scores lie in [0, 1] (min %.4g, max %.4g): they look sigmoid-squashed, where this "
            "objective expects raw logits; margins of probabilities are tiny. Score with raw logits (st-distill teacher "
            "keeps them) or choose a normalisation (normalize=...) on purpose",
            name, finite.size, finite.min(), finite.max(),
        )


#: A float32 softmax underflows once a row's spread divided by the temperature exceeds about this
#: (the bound of ``sentence_transformers.util.check_teacher_targets``).
SOFTMAX_SPREAD = 100.0


def _warn_if_softmax_underflows(name: str, objective: Objective, rows: list[tuple]) -> None:
    """Warns when a listwise row's target spread over the loss's default temperature underflows a softmax."""
    temperature = objective.loss_kwargs.get("temperature")
    if not temperature or not rows:
        return
    spread = max((max(scores) - min(scores) for _, _, scores in rows if scores), default=0.0)
    if spread / temperature > SOFTMAX_SPREAD:
        logger.warning(
            "%s: the widest list of targets spans %.1f; at the loss's temperature %g a float32 softmax underflows "
            "(spread / temperature above about %g), so some documents carry no gradient. Train with a temperature "
            "above %.3g, or normalise the teacher scores (normalize='zscore')",
            name, spread, temperature, SOFTMAX_SPREAD, spread / SOFTMAX_SPREAD,
        )


def build_dataset(
    objective: str | Objective,
    queries: Mapping[str, str] | Dataset,
    corpus: Mapping[str, str] | Dataset,
    *,
    qrels: Qrels | None = None,
    negatives: Negatives | None = None,
    candidates: Run | Dataset | IterableDataset | None = None,
    teacher_scores: Run | pa.Table | Dataset | IterableDataset | None = None,
    triples: pa.Table | str | os.PathLike | None = None,
    n_negatives: int | None = None,
    relevance_threshold: int = 1,
    max_positives: int | None = None,
    max_queries: int | None = None,
    seed: int = 0,
    lazy: bool = False,
    skip_invalid: bool = False,
    ids: bool = False,
    normalize: Normalization | None = None,
) -> tuple[Dataset, BuildReport]:
    """Builds the training dataset of one registry objective.

    Inputs by format (see the module docstring for the columns):

    - pointwise / ntuple from judgements: ``qrels`` gives the positives (grade >=
      ``relevance_threshold``); ``negatives`` (or, if absent, ``candidates`` minus the relevant
      documents) is each query's pool of negatives. Each positive gives one ntuple row with
      ``n`` negatives drawn uniformly from the pool (all of it when it holds exactly ``n``;
      the row is skipped when it holds fewer), or, pointwise, one ``label=1.0`` row and ``n``
      (default 1) ``label=0.0`` rows. Formats with ``teacher="scores"`` (``marginmse``) take the
      scores list ``[t_pos, t_neg_1..n]`` from ``teacher_scores``; a row missing one is skipped.
    - pointwise from candidates (``mse``): ``candidates`` gives each query's documents in rank
      order, cut to ``n + 1``; each document with a teacher score gives one row, ``score`` = its
      raw teacher logit.
    - pointwise / ntuple from ``triples`` (Hofstätter's file or an equivalent table): one row
      per triple (two for pointwise), one negative, scores ``[pos_score, neg_score]`` (pointwise:
      labels 1.0 / 0.0, or the two teacher scores for ``mse``).
    - listwise: ``candidates`` (a run or an LLM ranking) gives each query's documents, in rank
      order, cut to ``n + 1``; ``scores`` come from ``teacher_scores``, or from the candidates'
      own scores when the format's teacher is ``"ranking"`` (e.g. LLM pseudo-scores). Formats
      with ``positive_first`` (``kldistill+infonce``) build one list per positive: the positive,
      then ``n`` negatives from the pool. Lists need two documents with scores.

    Ids without text (e.g. judged TREC DL passages whose text is unknown) are left out and
    counted in the report; input files are validated by their readers.

    Args:
        objective: Registry name (``"marginmse"``) or :class:`~st_distill.objectives.Objective`.
        queries: ``{qid: text}``: a dict, a :class:`TextStore`, or a ``resolve_ids`` lookup dataset
            (``Dataset``, ``(Dataset, id_col)`` or ``(Dataset, id_col, value_col)``).
        corpus: ``{docid: text}``: as ``queries``.
        qrels: Judgements ``{qid: {docid: grade}}``.
        negatives: ``{qid: [docid, ...]}`` pools (see :mod:`st_distill.data.negatives`).
        candidates: ``{qid: {docid: score}}``: listwise lists and ``mse`` candidates, or negatives pools
            when ``negatives`` is None; or an id dataset (``query_id``, ``document_ids``, ``scores``;
            streaming allowed), read by :func:`~st_distill.data.ids.run_from_ids`.
        teacher_scores: ``{qid: {docid: score}}``, a ``(qid, docid, score)`` table
            (:func:`~st_distill.data.normalize.scores_table`; e.g. ``TeacherScores.table()``, or the
            :class:`~st_distill.teachers.TeacherScores` itself, an Arrow stream), or an id dataset.
        triples: Path to a teacher-triples file, or a table as returned by
            :func:`~st_distill.data.teacher_files.read_teacher_triples`.
        n_negatives: Negatives per row (documents per list - 1); the format's study default when None.
        relevance_threshold: Lowest grade that counts as relevant (TREC DL passage: 2).
        max_positives: At most this many positives per query (highest grade first, then by id).
        max_queries: Use only the first ``max_queries`` queries that yield rows (in source order).
        seed: Sampling seed.
        lazy: Store row numbers into ``queries``/``corpus`` (which must then be :class:`TextStore`)
            and join texts on access.
        skip_invalid: Passed to the triples reader: skip bad lines with a counted warning.
        ids: Store string ids in ``resolve_ids`` naming instead of texts (see :mod:`st_distill.data.ids`).
        normalize: How teacher scores become targets: ``"raw"``, ``"sigmoid"``, ``"minmax"``,
            ``"zscore"``, ``"global-zscore"`` or ``"rank"`` (see :mod:`st_distill.data.normalize`;
            per-query statistics over all of a query's given teacher scores). ``None``: the
            method recorded in the ``teacher_scores`` table (scores read from a cache), else
            ``"raw"``. Recorded in the report.

    Returns:
        ``(dataset, report)``.

    Raises:
        ValueError: On an unknown objective or normalisation, missing inputs the format needs, ``lazy``
            without stores, ``lazy`` with ``ids``, a normalisation asked of an objective without
            teacher scores or of triples, or a NaN teacher score (the pair named).
        FormatError: On a malformed triples file (unless ``skip_invalid``).
    """
    started = time.perf_counter()
    name, fmt, objective = _format(objective)
    if normalize is not None:
        check_normalization(normalize)
    n = fmt.n_negatives if n_negatives is None else n_negatives
    if fmt.kind == "pointwise":
        n = 1 if n is None else n
    if n is None or n < 1:
        raise ValueError(f"{name}: n_negatives must be at least 1, got {n}")
    if lazy and ids:
        raise ValueError("give lazy=True (row numbers into text stores) or ids=True (string ids), not both")
    if lazy and not (isinstance(queries, TextStore) and isinstance(corpus, TextStore)):
        raise ValueError("lazy=True needs queries and corpus as TextStore objects (TextStore.from_file / from_texts)")
    queries, corpus = _as_texts(queries), _as_texts(corpus)
    report = BuildReport(objective=name, kind=fmt.kind, columns=fmt.columns(n), n_negatives=n, seed=seed, lazy=lazy, ids=ids)
    skipped: Counter = Counter()
    if triples is not None:
        if fmt.kind == "listwise":
            raise ValueError(f"{name}: a listwise objective cannot be built from teacher triples; give candidates")
        if fmt.kind == "ntuple" and n != 1:
            raise ValueError(f"{name}: teacher triples hold one negative per row, got n_negatives={n}")
        if normalize not in (None, "raw"):
            raise ValueError(f"{name}: teacher triples are used with their scores as given; normalize={normalize!r} is not supported")
        report.normalize = "raw" if fmt.teacher is not None else None
        table, columns = _from_triples(fmt, triples, queries, corpus, skip_invalid, skipped, report)
    else:
        given_candidates, candidates = candidates, _as_run(candidates)
        given_scores = teacher_scores is not None and teacher_scores is given_candidates
        scores = run_table(candidates) if given_scores else _as_scores(teacher_scores)
        if fmt.teacher == "scores" and scores is None:
            raise ValueError(f"{name}: this objective trains on teacher scores; pass teacher_scores (or triples)")
        targets, report.normalize = _targets(name, fmt, normalize, scores, candidates)
        if scores is not None:
            report.teacher = scores_provenance(scores)[1]
        rows = _rows(
            fmt, n, queries, corpus, qrels, negatives, candidates, targets,
            relevance_threshold, max_positives, max_queries, seed, skipped,
        )
        if not rows:
            raise ValueError(f"{name}: the build produced no rows (skipped: {dict(skipped) or 'nothing'}); check the inputs")
        if fmt.kind == "listwise" and fmt.teacher is not None:
            _warn_if_softmax_underflows(name, objective, rows)
        given = (("qrels", qrels), ("negatives", negatives), ("candidates", candidates), ("teacher_scores", scores))
        report.sources = {key: value is not None for key, value in given}
        report.queries = len({row[0] for row in rows})
        table, columns = _table(fmt, rows, report.columns, queries, corpus, lazy, ids)
    if ids:
        table = table.rename_columns(id_columns(table.column_names, columns[1]))
        report.columns = table.column_names
    dataset = _dataset(table, columns, queries, corpus, lazy)
    report.rows = table.num_rows
    report.skipped = dict(sorted(skipped.items()))
    report.seconds = round(time.perf_counter() - started, 3)
    if not report.rows:
        raise ValueError(f"{name}: the build produced no rows (skipped: {report.skipped or 'nothing'}); check the inputs")
    for reason, count in report.skipped.items():
        logger.warning("build %s: skipped %d (%s)", name, count, reason)
    return dataset, report


def _dataset(table: pa.Table, columns: tuple[list[str], list[str]], queries, corpus, lazy: bool) -> Dataset:
    from datasets import Dataset
    from datasets.fingerprint import generate_random_fingerprint

    # an explicit fingerprint: otherwise datasets hashes the whole in-memory table (seconds at 40M rows)
    dataset = Dataset(table, fingerprint=generate_random_fingerprint())
    if lazy:
        dataset.set_transform(LazyTexts(queries, corpus, *columns))
    return dataset


def _rows(
    fmt: DatasetFormat,
    n: int,
    queries: Mapping[str, str],
    corpus: Mapping[str, str],
    qrels: Qrels | None,
    negatives: Negatives | None,
    candidates: Run | None,
    targets: dict[tuple[str, str], float] | None,
    threshold: int,
    max_positives: int | None,
    max_queries: int | None,
    seed: int,
    skipped: Counter,
) -> list[tuple]:
    """Rows of ids: ``(qid, docid, label)``, ``(qid, pos, negs, scores)`` or ``(qid, docs, scores)``."""
    if fmt.from_candidates:
        if candidates is None:
            raise ValueError(f"a {fmt.kind} dataset of ranked candidates needs candidates: a run or an LLM ranking per query")
        qids = list(candidates)
    else:
        if qrels is None:
            raise ValueError(f"a {fmt.kind} dataset needs qrels (the positives)")
        if negatives is None and candidates is None:
            raise ValueError(f"a {fmt.kind} dataset needs negatives (or candidates to take them from)")
        qids = list(qrels)
    query_text = dict(zip(qids, lookup_texts(queries, qids)))
    doc_ids = set()
    for qid in qids:
        doc_ids.update((qrels or {}).get(qid, ()))
        doc_ids.update((negatives or {}).get(qid, ()) if negatives is not None else (candidates or {}).get(qid, ()))
    doc_ids = sorted(doc_ids)
    has_text = {docid for docid, text in zip(doc_ids, lookup_texts(corpus, doc_ids)) if text is not None}

    def score(qid: str, docid: str) -> float | None:
        return None if targets is None else targets.get((qid, docid))

    rows: list[tuple] = []
    used_queries = 0
    for qid in qids:
        if max_queries is not None and used_queries >= max_queries:
            break
        if query_text[qid] is None:
            skipped["query without text"] += 1
            continue
        before = len(rows)
        if fmt.from_candidates:
            _candidate_rows(fmt, qid, candidates[qid], n, has_text, score, rows, skipped)
        else:
            grades = qrels.get(qid, {})
            positives = sorted(relevant(qrels, qid, threshold), key=lambda d: (-grades[d], d))
            missing = [d for d in positives if d not in has_text]
            if missing:
                skipped["positive without text"] += len(missing)
            positives = [d for d in positives if d in has_text][:max_positives]
            if not positives:
                skipped["query without a positive"] += 1
                continue
            exclude = relevant(qrels, qid, threshold)
            if negatives is not None:
                pool = list(negatives.get(qid, []))
            else:
                pool = [d for d, _ in ranked(candidates.get(qid, {}))]
            without_text = sum(d not in has_text for d in pool)
            if without_text:
                skipped["negative without text"] += without_text
            pool = [d for d in pool if d in has_text and d not in exclude]
            rng = query_rng(seed, qid)
            for positive in positives:
                picked = _sample(pool, n, rng)
                _example_rows(fmt, qid, positive, picked, n, score, rows, skipped)
        if len(rows) > before:
            used_queries += 1
    return rows


def _candidate_rows(fmt, qid, docs: Mapping[str, float], n: int, has_text, score, rows: list, skipped: Counter) -> None:
    """The query's top ``n + 1`` candidates with a text and a score: one list row, or one row per document (pointwise)."""
    listed = [d for d, _ in ranked(docs)][: n + 1]
    kept, scores = [], []
    for docid in listed:
        if docid not in has_text:
            skipped["document without text"] += 1
            continue
        value = score(qid, docid)
        if value is None:
            skipped["missing teacher score"] += 1
            continue
        kept.append(docid)
        scores.append(float(value))
    if fmt.kind == "pointwise":
        rows.extend((qid, docid, value) for docid, value in zip(kept, scores))
        return
    if len(kept) < 2:
        skipped["list with fewer than 2 documents"] += 1
        return
    rows.append((qid, kept, scores))


def _example_rows(fmt, qid: str, positive: str, picked: list[str], n: int, score, rows: list, skipped: Counter) -> None:
    if fmt.kind == "pointwise":
        if not picked:
            skipped["row without a negative"] += 1
            return
        rows.append((qid, positive, 1.0))
        rows.extend((qid, negative, 0.0) for negative in picked)
        return
    if fmt.kind == "ntuple" and len(picked) < n:
        skipped[f"fewer than {n} negatives"] += 1
        return
    if fmt.kind == "listwise" and not picked:
        skipped["list with fewer than 2 documents"] += 1
        return
    docs = [positive, *picked]
    scores = None
    if fmt.label_column == "scores":
        scores = [score(qid, d) for d in docs]
        if any(value is None for value in scores):
            skipped["missing teacher score"] += 1
            return
        scores = [float(value) for value in scores]
    rows.append((qid, docs, scores))


def _table(
    fmt: DatasetFormat, rows: list[tuple], columns: list[str], queries, corpus, lazy: bool, ids: bool
) -> tuple[pa.Table, tuple[list[str], list[str]]]:
    """Turns id rows into the format's columns: texts, row numbers into the stores when lazy, or the ids."""

    def resolve(texts, keys: list[str]) -> pa.Array:
        if ids:
            return pa.array(keys, pa.string())
        if lazy:
            return pa.array(texts.rows(keys).astype(np.int32))
        return pa.array(lookup_texts(texts, keys), pa.string())

    qids = [row[0] for row in rows]
    data: dict[str, Any] = {"query": resolve(queries, qids)}
    if fmt.kind == "pointwise":
        data["document"] = resolve(corpus, [row[1] for row in rows])
        data[fmt.label_column] = pa.array([row[2] for row in rows], pa.float32())
        return pa.table(data), (["query", "document"], [])
    if fmt.kind == "ntuple":
        text_columns = [c for c in columns if c != "scores"]
        for i, name in enumerate(text_columns[1:]):
            data[name] = resolve(corpus, [row[1][i] for row in rows])
        if fmt.label_column == "scores":
            data["scores"] = pa.array([row[2] for row in rows], pa.list_(pa.float32()))
        return pa.table(data), (text_columns, [])
    lengths = [len(row[1]) for row in rows]
    flat = resolve(corpus, [docid for row in rows for docid in row[1]])
    offsets = pa.array(np.cumsum([0, *lengths]).astype(np.int32))
    data["docs"] = pa.ListArray.from_arrays(offsets, flat)
    data["scores"] = pa.array([row[2] for row in rows], pa.list_(pa.float32()))
    return pa.table(data), (["query"], ["docs"])


def _known_ids(texts: Mapping[str, str]) -> pa.Array | TextStore:
    """What the triples reader looks ids up in: the store itself (its fast path), or the dict's keys."""
    return texts if isinstance(texts, TextStore) else pa.array(list(texts), pa.string())


def _from_triples(fmt, triples, queries, corpus, skip_invalid: bool, skipped: Counter, report: BuildReport):
    """The scale path: one teacher triple per row (two rows for pointwise), all in Arrow."""
    if isinstance(triples, pa.Table):
        table = triples
        report.sources = {"triples": "table"}
        if "query_row" not in table.column_names:
            table = _index_table(table, queries, corpus, skipped)
    else:
        report.sources = {"triples": str(triples)}
        table = read_teacher_triples(
            triples, _known_ids(queries), _known_ids(corpus), skip_invalid=skip_invalid, skipped=skipped, keep_ids=report.ids
        )
    q, p, g = (table.column(c).combine_chunks() for c in ("query_row", "positive_row", "negative_row"))
    seen = np.zeros(len(queries), dtype=bool)
    seen[q.to_numpy()] = True
    report.queries = int(seen.sum())

    def column(rows: pa.Array, texts, id_name: str) -> pa.Array:
        if report.ids:
            if id_name not in table.column_names:
                raise ValueError(f"ids=True needs the triples' id column {id_name!r}; the table given has {table.column_names}")
            return table.column(id_name).combine_chunks()
        return rows if report.lazy else _texts_at(texts, rows)

    queries_col, pos_col, neg_col = column(q, queries, "qid"), column(p, corpus, "pos_pid"), column(g, corpus, "neg_pid")
    count = table.num_rows
    teacher = np.empty(2 * count, dtype=np.float32)  # [t_pos, t_neg] per triple, interleaved
    teacher[0::2] = table.column("pos_score").to_numpy()
    teacher[1::2] = table.column("neg_score").to_numpy()
    if fmt.kind == "pointwise":
        # each triple gives (query, positive, 1.0 or t_pos) then (query, negative, 0.0 or t_neg)
        order = np.empty(2 * count, dtype=np.int64)
        order[0::2] = np.arange(count)
        order[1::2] = np.arange(count) + count
        labels = teacher if fmt.teacher == "scores" else np.tile(np.array([1.0, 0.0], dtype=np.float32), count)
        out = pa.table(
            {
                "query": queries_col.take(pa.array(np.arange(2 * count) // 2)),
                "document": pa.concat_arrays([pos_col, neg_col]).take(pa.array(order)),
                fmt.label_column: pa.array(labels),
            }
        )
        return out, (["query", "document"], [])
    data = {"query": queries_col, "positive": pos_col, "negative_1": neg_col}
    if fmt.label_column == "scores":
        offsets = pa.array(np.arange(0, teacher.size + 1, 2, dtype=np.int32))
        data["scores"] = pa.ListArray.from_arrays(offsets, pa.array(teacher))
    return pa.table(data), (["query", "positive", "negative_1"], [])


def _index_table(table: pa.Table, queries, corpus, skipped: Counter) -> pa.Table:
    """Adds ``*_row`` columns to a triples table given without them; drops (and counts) rows with unknown ids."""
    keep = None
    for source, target, known, what in (
        ("qid", "query_row", _known_ids(queries), "query"),
        ("pos_pid", "positive_row", _known_ids(corpus), "passage"),
        ("neg_pid", "negative_row", _known_ids(corpus), "passage"),
    ):
        positions = id_positions(table.column(source), known)
        table = table.append_column(target, positions)
        valid = pc.is_valid(positions)
        keep = valid if keep is None else pc.and_(keep, valid)
    dropped = table.num_rows - pc.sum(keep.cast(pa.int64())).as_py()
    if dropped:
        skipped["triple with an unknown id"] += dropped
        table = table.filter(keep)
    return table


def _texts_at(texts: Mapping[str, str], rows: pa.Array) -> pa.Array:
    if isinstance(texts, TextStore):
        return pa.array(texts.texts(rows.to_numpy()), pa.string())
    values = list(texts.values())
    return pa.array([values[i] for i in rows.to_numpy()], pa.string())


def save_dataset(dataset: Dataset, report: BuildReport, path: str | os.PathLike) -> None:
    """Saves a built dataset into the folder ``path``.

    Writes ``dataset.arrow`` (the Arrow table in the stream format that ``datasets`` memory-maps:
    ``datasets.Dataset.from_file("PATH/dataset.arrow")`` opens it with no copy, whatever its
    size), ``report.json``, and for a lazy dataset ``lazy_texts.json`` naming its text stores.
    :func:`load_built_dataset` loads it back with the lazy join re-attached. Writing the table
    directly takes seconds for 40M rows, where ``save_to_disk`` re-encodes it in 1,000-row batches.
    """
    import pyarrow.ipc as ipc

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    transform = dataset.format.get("format_kwargs", {}).get("transform") if dataset.format else None
    plain = dataset.with_format(None).flatten_indices() if dataset._indices is not None else dataset.with_format(None)
    table = plain.data.table
    tmp = path / f".{DATASET_FILE}.{os.getpid()}.tmp"
    try:
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=1 << 20)
        os.replace(tmp, path / DATASET_FILE)
    finally:
        if tmp.exists():
            tmp.unlink()
    if isinstance(transform, LazyTexts):
        config = transform.config()
        for key in ("queries", "corpus"):  # stores saved inside the dataset folder are referred to relatively
            store = Path(config[key]).resolve()
            if store.is_relative_to(path.resolve()):
                config[key] = store.relative_to(path.resolve()).as_posix()
        write_json(path / LAZY_FILE, config)
    elif (path / LAZY_FILE).exists():
        (path / LAZY_FILE).unlink()
    report.save(path / REPORT_FILE)


def load_built_dataset(path: str | os.PathLike) -> Dataset:
    """Loads (memory-maps) a dataset saved by :func:`save_dataset`, re-attaching the lazy text join if any.

    Raises:
        FileNotFoundError: When ``path`` holds no saved dataset.
    """
    from datasets import Dataset

    path = Path(path)
    if not (path / DATASET_FILE).is_file():
        raise FileNotFoundError(f"{path / DATASET_FILE}: no saved dataset")
    dataset = Dataset.from_file(str(path / DATASET_FILE))
    if (path / LAZY_FILE).is_file():
        config = json.loads((path / LAZY_FILE).read_text(encoding="utf-8"))
        stores = [Path(config[key]) if Path(config[key]).is_absolute() else path / config[key] for key in ("queries", "corpus")]
        dataset.set_transform(LazyTexts(TextStore(stores[0]), TextStore(stores[1]), config["text_columns"], config["list_columns"]))
    return dataset


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON report saved next to a built dataset."""
    return json.loads((Path(path) / REPORT_FILE).read_text(encoding="utf-8"))
