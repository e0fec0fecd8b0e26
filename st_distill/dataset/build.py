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

        from st_distill.dataset import build_dataset, save_dataset
        from st_distill.data.formats import load_beir, read_trec_run
        from st_distill.data.negatives import negatives_from_run

        beir = load_beir("scifact", split="train")
        negatives = negatives_from_run(read_trec_run("bm25.trec"), beir.qrels, k=7, depth=100, strategy="uniform")
        dataset, report = build_dataset("infonce", beir.queries, beir.corpus, qrels=beir.qrels, negatives=negatives)
        save_dataset(dataset, report, "data/scifact-infonce")
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from st_distill.data.formats import Qrels, Run
from st_distill.data.ids import id_columns, texts_from_lookup
from st_distill.data.negatives import Negatives
from st_distill.data.normalize import Normalization, check_normalization, run_table, scores_provenance
from st_distill.data.store import TextStore
from st_distill.dataset.persist import dataset_of
from st_distill.dataset.report import BuildReport
from st_distill.dataset.rows import id_rows, rows_table
from st_distill.dataset.targets import as_run, as_scores, label_targets, warn_if_softmax_underflows
from st_distill.dataset.triples import from_triples

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset

    from st_distill.objectives import DatasetFormat, Objective

logger = logging.getLogger(__name__)


def _format(objective: str | Objective) -> tuple[str, DatasetFormat, Objective]:
    from st_distill.objectives import get_objective

    objective = get_objective(objective) if isinstance(objective, str) else objective
    return objective.name, objective.dataset_format, objective


def _as_texts(texts: Mapping[str, str] | Any) -> Mapping[str, str]:
    """``{id: text}`` as given (a dict or a TextStore), or read from a ``resolve_ids`` lookup dataset."""
    return texts if isinstance(texts, Mapping) else texts_from_lookup(texts)


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
        table, columns = from_triples(fmt, triples, queries, corpus, skip_invalid, skipped, report)
    else:
        given_candidates, candidates = candidates, as_run(candidates)
        given_scores = teacher_scores is not None and teacher_scores is given_candidates
        scores = run_table(candidates) if given_scores else as_scores(teacher_scores)
        if fmt.teacher == "scores" and scores is None:
            raise ValueError(f"{name}: this objective trains on teacher scores; pass teacher_scores (or triples)")
        targets, report.normalize = label_targets(name, fmt, normalize, scores, candidates)
        if scores is not None:
            report.teacher = scores_provenance(scores)[1]
        rows = id_rows(
            fmt, n, queries, corpus, qrels, negatives, candidates, targets,
            relevance_threshold, max_positives, max_queries, seed, skipped,
        )
        if not rows:
            raise ValueError(f"{name}: the build produced no rows (skipped: {dict(skipped) or 'nothing'}); check the inputs")
        if fmt.kind == "listwise" and fmt.teacher is not None:
            warn_if_softmax_underflows(name, objective, rows)
        given = (("qrels", qrels), ("negatives", negatives), ("candidates", candidates), ("teacher_scores", scores))
        report.sources = {key: value is not None for key, value in given}
        report.queries = len({row[0] for row in rows})
        table, columns = rows_table(fmt, rows, report.columns, queries, corpus, lazy, ids)
    if ids:
        table = table.rename_columns(id_columns(table.column_names, columns[1]))
        report.columns = table.column_names
    dataset = dataset_of(table, columns, queries, corpus, lazy)
    report.rows = table.num_rows
    report.skipped = dict(sorted(skipped.items()))
    report.seconds = round(time.perf_counter() - started, 3)
    if not report.rows:
        raise ValueError(f"{name}: the build produced no rows (skipped: {report.skipped or 'nothing'}); check the inputs")
    for reason, count in report.skipped.items():
        logger.warning("build %s: skipped %d (%s)", name, count, reason)
    return dataset, report
