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
import warnings
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
from st_distill.objectives import get_objective

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset

    from st_distill.objectives import DatasetFormat, Objective

logger = logging.getLogger(__name__)


def _format(objective: str | Objective) -> tuple[str, DatasetFormat, Objective]:
    objective = get_objective(objective) if isinstance(objective, str) else objective
    return objective.name, objective.dataset_format, objective


def _as_texts(texts: Mapping[str, str] | Any) -> Mapping[str, str]:
    """``{id: text}`` as given (a dict or a TextStore), or read from a ``resolve_ids`` lookup dataset."""
    return texts if isinstance(texts, Mapping) else texts_from_lookup(texts)


#: What the size of a row counts, by format: the keyword of :func:`build_dataset` (and its CLI flag).
SIZE_NAMES = {"ntuple": "negatives_per_row", "pointwise": "negatives_per_row", "candidates": "candidates_per_query", "listwise": "list_size"}


def size_name(fmt: DatasetFormat) -> str:
    """What a row's size counts for ``fmt``: ``"negatives_per_row"``, ``"list_size"`` or ``"candidates_per_query"``."""
    return SIZE_NAMES["candidates" if fmt.kind == "pointwise" and fmt.from_candidates else fmt.kind]


def size_argument(fmt: DatasetFormat, n: int) -> dict[str, int]:
    """The keyword argument of :func:`build_dataset` for ``n`` documents per row beyond the first,
    e.g. ``{"list_size": n + 1}`` for a listwise format."""
    name = size_name(fmt)
    return {name: n if name == "negatives_per_row" else n + 1}


def resolve_negatives(
    fmt: DatasetFormat,
    name: str,
    negatives_per_row: int | None = None,
    list_size: int | None = None,
    candidates_per_query: int | None = None,
    n_negatives: int | None = None,
) -> int:
    """The documents of a row beyond the first (negatives per row, list size - 1, candidates - 1):
    the one place their default is resolved.

    Args:
        fmt: The objective's dataset format.
        name: The objective's name (for messages).
        negatives_per_row: See :func:`build_dataset`; only for ntuple and pointwise-from-qrels formats.
        list_size: Only for listwise formats.
        candidates_per_query: Only for pointwise formats built from candidates (``mse``).
        n_negatives: Deprecated: any of the three, counted beyond the first document.

    Returns:
        The number of documents per row beyond the first (at least 1).

    Raises:
        ValueError: When a size is given that the format does not count, or one is too small.
    """
    expected = size_name(fmt)
    given = {"negatives_per_row": negatives_per_row, "list_size": list_size, "candidates_per_query": candidates_per_query}
    wrong = [key for key, value in given.items() if value is not None and key != expected]
    if wrong:
        raise ValueError(f"{name}: a {fmt.kind} dataset counts {expected}, not {wrong[0]}")
    if n_negatives is not None:
        warnings.warn(f"n_negatives is deprecated: give {expected}", DeprecationWarning, stacklevel=3)
        if given[expected] is not None:
            raise ValueError(f"{name}: give {expected} or the deprecated n_negatives, not both")
        n = n_negatives
    elif given[expected] is not None:
        n = given[expected] - (0 if expected == "negatives_per_row" else 1)
    else:
        n = fmt.n_negatives if fmt.n_negatives is not None else 1
    if n < 1:
        minimum = 1 if expected == "negatives_per_row" else 2
        value = n if n_negatives is not None or expected == "negatives_per_row" else n + 1
        raise ValueError(f"{name}: {'n_negatives' if n_negatives is not None else expected} must be at least "
                         f"{1 if n_negatives is not None else minimum}, got {value}")
    return n


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
    negatives_per_row: int | None = None,
    list_size: int | None = None,
    candidates_per_query: int | None = None,
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
        negatives_per_row: ntuple formats: negatives per row; pointwise formats built from qrels
            (``bce``): ``label=0.0`` rows per positive. Default: the format's (1 for pointwise).
        list_size: Listwise formats: documents per list. Default: the format's (50).
        candidates_per_query: Pointwise formats built from candidates (``mse``): rows (ranked
            candidates) per query. Default: the format's (50).
        n_negatives: Deprecated spelling of all three, counted beyond the first document
            (``list_size - 1``, ``candidates_per_query - 1``).
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
    n = resolve_negatives(
        fmt, name, negatives_per_row=negatives_per_row, list_size=list_size, candidates_per_query=candidates_per_query,
        n_negatives=n_negatives,
    )
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
            raise ValueError(f"{name}: teacher triples hold one negative per row, got negatives_per_row={n}")
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
