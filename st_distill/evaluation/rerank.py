"""Re-ranking of a precomputed first-stage run with a CrossEncoder, and its evaluation.

The study's protocol: take each query's top ``depth`` documents of a first-stage run
(ranked as trec_eval ranks them: score descending, then docid descending), score every
(query, document) pair with the cross-encoder, and rank the candidates by that score.
The re-ranked run holds only those ``depth`` candidates; the first stage is evaluated on
the same candidates (its run cut to ``depth``), so both rows of a results table compare
the same documents.

Bad input, and what happens:

=============================================  ==================================================
input                                          behaviour
=============================================  ==================================================
malformed run line (e.g. 5 fields)             :class:`FormatError` naming the file and line
empty run                                      :class:`FormatError` (file) / ``ValueError`` (dict)
document of the run missing from the corpus    ``ValueError`` naming the run file and line; with
                                               ``skip_missing=True`` the document is dropped from
                                               the candidates and counted (``missing_documents``)
query of the run without text                  the same, counted as ``missing_queries`` (the query
                                               is dropped from both evaluated runs)
query of the run without judgements            re-ranked and written, left out of the metrics and
                                               counted as ``unjudged`` in each metrics block
=============================================  ==================================================
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from st_distill.data.formats import (
    FormatError,
    Qrels,
    Run,
    Texts,
    iter_trec_run,
    load_beir,
    ranked,
    read_qrels,
    read_texts,
    read_trec_run,
    write_trec_run,
)
from st_distill.evaluation.metrics import Evaluation, evaluate, parse_measures
from st_distill.io import require_output_folder, write_json
from st_distill.models import cap_max_length, load_cross_encoder
from st_distill.models.scoring import score_pairs

if TYPE_CHECKING:
    from sentence_transformers.cross_encoder import CrossEncoder

logger = logging.getLogger(__name__)


class MissingTextError(ValueError):
    """A query or document of the run has no text. Carries the offending ``kind`` and ``qid``/``docid``."""

    def __init__(self, kind: str, qid: str, docid: str | None, message: str) -> None:
        self.kind, self.qid, self.docid = kind, qid, docid
        super().__init__(message)


@dataclass
class Candidates:
    """The (query, document) pairs to score: each query's top-``depth`` first-stage documents with texts.

    Attributes:
        first_stage: The first-stage run cut to the candidates (``{qid: {docid: score}}``).
        pairs: ``(query text, document text)`` per candidate, in ``first_stage`` order.
        ids: ``(qid, docid)`` per candidate, aligned with ``pairs``.
        skipped: ``{"missing_queries": n, "missing_documents": n}`` when skipping was asked.
    """

    first_stage: Run
    pairs: list[tuple[str, str]]
    ids: list[tuple[str, str]]
    skipped: Counter = field(default_factory=Counter)


def top_candidates(
    run: Mapping[str, Mapping[str, float]],
    queries: Texts,
    corpus: Texts,
    depth: int | None = 100,
    skip_missing: bool = False,
    qids: Sequence[str] | None = None,
) -> Candidates:
    """Cuts a run to each query's top ``depth`` documents (trec_eval order) and attaches their texts.

    Args:
        run: The first-stage run.
        queries: ``{qid: text}``.
        corpus: ``{docid: text}``.
        depth: Documents re-ranked per query; ``None`` keeps them all (a run already cut to its depth).
        skip_missing: Drop (and count) queries and documents without text instead of raising.
        qids: Only these queries of the run (default: all, in run order).

    Returns:
        The :class:`Candidates`.

    Raises:
        MissingTextError: On a query or document without text, unless ``skip_missing``.
        ValueError: On a non-positive ``depth`` or an empty run.
    """
    if depth is not None and depth <= 0:
        raise ValueError(f"depth must be positive, got {depth}")
    if not run:
        raise ValueError("the run is empty: nothing to re-rank")
    first_stage: Run = {}
    pairs: list[tuple[str, str]] = []
    ids: list[tuple[str, str]] = []
    skipped: Counter = Counter()
    for qid in run if qids is None else qids:
        query = queries.get(qid)
        if query is None:
            if not skip_missing:
                raise MissingTextError("query", qid, None, f"query {qid!r} of the run has no text in the queries")
            skipped["missing_queries"] += 1
            continue
        kept: dict[str, float] = {}
        for docid, score in ranked(run[qid])[:depth]:
            document = corpus.get(docid)
            if document is None:
                if not skip_missing:
                    raise MissingTextError(
                        "document", qid, docid, f"document {docid!r} (query {qid!r}) is not in the corpus"
                    )
                skipped["missing_documents"] += 1
                continue
            kept[docid] = score
            pairs.append((query, document))
            ids.append((qid, docid))
        if kept:
            first_stage[qid] = kept
    if skipped:
        logger.warning("skipped texts missing from the inputs: %s", dict(skipped))
    return Candidates(first_stage, pairs, ids, skipped)


@dataclass
class Reranking:
    """A re-ranking of candidates by a model, and its metrics.

    Attributes:
        run: The re-ranked run ``{qid: {docid: raw logit}}``, over the candidates' queries.
        evaluation: Its :class:`~st_distill.evaluation.metrics.Evaluation`.
        seconds: Wall-clock seconds spent scoring.
    """

    run: Run
    evaluation: Evaluation
    seconds: float


def score_candidates(
    model: CrossEncoder, candidates: Candidates, batch_size: int = 64, show_progress_bar: bool | None = None
) -> Run:
    """Scores every candidate pair with a CrossEncoder: the re-ranking core every evaluation goes through.

    Args:
        model: The CrossEncoder (one output label).
        candidates: The pairs to score, from :func:`top_candidates`.
        batch_size: Pairs per forward pass.
        show_progress_bar: Progress bar over the pairs (``None``: when logging at INFO).

    Returns:
        The re-ranked run ``{qid: {docid: score}}``, queries in the candidates' order. Its scores are
        the model's raw logits: the activation (a sigmoid) is monotonic, so the ranking is the same,
        but it saturates to 1.0 in float32 and would tie top documents.

    Raises:
        ValueError: When there is no candidate pair.
    """
    if not candidates.pairs:
        raise ValueError("no (query, document) pair left to re-rank")
    scores = score_pairs(
        model, candidates.pairs, batch_size=batch_size, activation=False, show_progress_bar=show_progress_bar
    )
    reranked: Run = {qid: {} for qid in candidates.first_stage}
    for (qid, docid), score in zip(candidates.ids, scores.tolist()):
        reranked[qid][docid] = score
    return reranked


def rerank_and_measure(
    model: CrossEncoder,
    candidates: Candidates,
    qrels: Qrels,
    measures: Sequence[str] | None = None,
    rel_level: int = 1,
    batch_size: int = 64,
    show_progress_bar: bool | None = None,
    given_names: bool = False,
) -> Reranking:
    """Re-ranks candidates with a model (:func:`score_candidates`) and evaluates the re-ranked run
    (:func:`~st_distill.evaluation.metrics.evaluate`): the one re-rank + evaluate step of the
    trainer evaluator, the learning curves, the bench and ``st-distill eval``.

    Args:
        model: The CrossEncoder (one output label).
        candidates: The pairs to score, from :func:`top_candidates`.
        qrels: ``{qid: {docid: grade}}``.
        measures: ir_measures names; ``None`` gives nDCG@10, RR@10, AP, R@100.
        rel_level: Minimum grade counted relevant by binary measures (2 for TREC DL passage).
        batch_size: Pairs per forward pass.
        show_progress_bar: Progress bar over the pairs (``None``: when logging at INFO).
        given_names: Key the metrics by the measure names as given (see
            :func:`~st_distill.evaluation.metrics.evaluate`).

    Returns:
        The :class:`Reranking`: run, metrics, scoring time.

    Raises:
        ValueError: On unknown measures, no candidate pair, or no judged query.
    """
    parse_measures(measures, rel_level)  # unknown names fail before any scoring
    start = time.perf_counter()
    reranked = score_candidates(model, candidates, batch_size, show_progress_bar)
    seconds = time.perf_counter() - start
    evaluation = evaluate(reranked, qrels, measures, rel_level=rel_level, given_names=given_names)
    return Reranking(reranked, evaluation, seconds)


def rerank_run(
    model: CrossEncoder,
    run: Mapping[str, Mapping[str, float]],
    queries: Texts,
    corpus: Texts,
    depth: int | None = 100,
    batch_size: int = 64,
    skip_missing: bool = False,
    show_progress_bar: bool | None = None,
) -> tuple[Run, Candidates]:
    """Re-ranks each query's top ``depth`` documents of a run with a CrossEncoder
    (:func:`top_candidates`, then :func:`score_candidates`).

    Args:
        model: The CrossEncoder (one output label).
        run: The first-stage run ``{qid: {docid: score}}``.
        queries: ``{qid: text}``.
        corpus: ``{docid: text}``.
        depth: Documents re-ranked per query; ``None`` re-ranks them all.
        batch_size: Pairs per forward pass.
        skip_missing: Drop (and count) queries and documents without text instead of raising.
        show_progress_bar: Progress bar over the pairs (``None``: when logging at INFO).

    Returns:
        ``(reranked, candidates)``: the re-ranked run (raw logits, see :func:`score_candidates`) and
        the :class:`Candidates` it was built from.

    Raises:
        MissingTextError: On a query or document without text, unless ``skip_missing``.
        ValueError: On an empty run, a non-positive depth, or nothing left to re-rank.
    """
    candidates = top_candidates(run, queries, corpus, depth, skip_missing)
    return score_candidates(model, candidates, batch_size, show_progress_bar), candidates


def load_inputs(
    corpus: str | os.PathLike,
    queries: str | os.PathLike | None = None,
    qrels: str | os.PathLike | None = None,
    split: str = "test",
) -> tuple[Texts, Texts, Qrels]:
    """Loads a corpus, queries and qrels from a BEIR folder or from separate files.

    Args:
        corpus: A BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``) or a
            corpus file (``.tsv`` ``id<TAB>text`` or BEIR ``.jsonl``, optionally ``.gz``).
        queries: Queries file; required unless ``corpus`` is a BEIR folder (where it overrides).
        qrels: Qrels file (TREC or BEIR TSV); required unless ``corpus`` is a BEIR folder.
        split: The BEIR qrels split.

    Returns:
        ``(corpus, queries, qrels)``.

    Raises:
        ValueError: When queries or qrels are needed and not given.
        FileNotFoundError / FormatError: On a missing or malformed file.
    """
    if Path(corpus).is_dir():
        beir = load_beir(corpus, split)
        return (
            beir.corpus,
            read_texts(queries) if queries else beir.queries,
            read_qrels(qrels) if qrels else beir.qrels,
        )
    if queries is None or qrels is None:
        raise ValueError("a corpus file needs --queries and --qrels (or pass a BEIR folder as the corpus)")
    return read_texts(corpus), read_texts(queries), read_qrels(qrels)


def _line_of(run_path: str | os.PathLike, qid: str, docid: str | None) -> int | None:
    """The line of ``run_path`` where ``qid`` (and ``docid``) first appears."""
    for number, line_qid, line_docid, _, _ in iter_trec_run(run_path, skip_invalid=True):
        if line_qid == qid and (docid is None or line_docid == docid):
            return number
    return None


def rerank_and_evaluate(
    model: CrossEncoder | str,
    run: str | os.PathLike,
    corpus: str | os.PathLike,
    queries: str | os.PathLike | None = None,
    qrels: str | os.PathLike | None = None,
    output_dir: str | os.PathLike | None = None,
    depth: int = 100,
    measures: Sequence[str] | None = None,
    rel_level: int = 1,
    batch_size: int = 64,
    split: str = "test",
    skip_missing: bool = False,
    max_length: int | None = None,
    show_progress_bar: bool | None = None,
) -> dict[str, Any]:
    """Re-ranks a TREC run file with a CrossEncoder and evaluates the first stage and the re-ranked run.

    Writes, when ``output_dir`` is given, ``run.reranked.trec`` (TREC format, tag ``st-distill``)
    and ``metrics.json`` (the returned report). Metrics per run: ``aggregate`` (means),
    ``per_query`` (for significance tests), ``queries`` (``evaluated``, ``unjudged``,
    ``judged_not_in_run``), see :func:`st_distill.evaluation.metrics.evaluate`.

    Args:
        model: A CrossEncoder, or its Hugging Face id or local path (loaded with one label).
        run: The first-stage TREC run file.
        corpus: A BEIR folder or a corpus file (see :func:`load_inputs`).
        queries: Queries file (optional with a BEIR folder).
        qrels: Qrels file (optional with a BEIR folder).
        output_dir: Where to write the re-ranked run and the metrics; None writes nothing.
        depth: Documents re-ranked per query.
        measures: ir_measures names; None gives nDCG@10, RR@10, AP, R@100.
        rel_level: Minimum grade counted relevant by binary measures (2 for TREC DL passage).
        batch_size: Pairs per forward pass.
        split: The BEIR qrels split.
        skip_missing: Drop and count queries/documents without text instead of failing.
        max_length: Override the model's maximum input length (tokens).
        show_progress_bar: Progress bar over the pairs.

    Returns:
        The report: inputs, settings, ``queries``/``pairs`` counts, ``skipped``, timing, and
        ``first_stage`` / ``reranked`` metrics blocks.

    Raises:
        FormatError: On a malformed or empty run (file and line named).
        ValueError: On a document or query without text (run file and line named), unless
            ``skip_missing``; on unknown measures; when no query of the run is judged; on a
            ``depth``, ``batch_size`` or ``max_length`` below 1.
        NotADirectoryError: When ``output_dir`` is an existing file (raised before any work).
        PermissionError: When ``output_dir`` cannot take new files (raised before any work).
    """
    # fail on bad settings before any work
    parsed = parse_measures(measures, rel_level)
    for name, value in (("depth", depth), ("batch_size", batch_size), ("max_length", max_length)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if output_dir is not None:
        require_output_folder(output_dir)
    names = [str(m) for m in parsed]
    first_run = read_trec_run(run)
    corpus_texts, query_texts, qrels_dict = load_inputs(corpus, queries, qrels, split)
    try:
        candidates = top_candidates(first_run, query_texts, corpus_texts, depth, skip_missing)
    except MissingTextError as exc:
        line = _line_of(run, exc.qid, exc.docid)
        where = "queries" if exc.kind == "query" else "corpus"
        raise FormatError(
            run, line, f"{exc} ({where}: {queries if exc.kind == 'query' and queries else corpus}); "
            "pass --skip-missing to drop and count such entries"
        ) from exc
    if not candidates.pairs:
        raise ValueError("no (query, document) pair left to re-rank")
    first = evaluate(candidates.first_stage, qrels_dict, parsed)
    model_name = model if isinstance(model, str) else getattr(getattr(model[0], "model", None), "name_or_path", None)
    if isinstance(model, str):
        model = load_cross_encoder(model, num_labels=1)
    if max_length is not None:
        model.max_seq_length = cap_max_length(model, max_length)
    second = rerank_and_measure(
        model, candidates, qrels_dict, parsed, batch_size=batch_size, show_progress_bar=show_progress_bar
    )
    reranked = second.run
    report: dict[str, Any] = {
        "model": str(model_name or type(model).__name__),
        "run": str(run),
        "corpus": str(corpus),
        "queries_file": str(queries) if queries else None,
        "qrels_file": str(qrels) if qrels else None,
        "depth": depth,
        "rel_level": rel_level,
        "measures": names,
        "max_length": model.max_seq_length,
        "queries": {"in_run": len(first_run), "reranked": len(reranked)},
        "pairs": {"scored": len(candidates.pairs), "unique": len(set(candidates.pairs))},
        "skipped": {"missing_queries": candidates.skipped["missing_queries"],
                    "missing_documents": candidates.skipped["missing_documents"]},
        "seconds": {"scoring": round(second.seconds, 3)},
        "first_stage": first.to_dict(),
        "reranked": second.evaluation.to_dict(),
    }
    if output_dir is not None:
        output_dir = Path(output_dir)
        write_trec_run(reranked, output_dir / "run.reranked.trec")
        write_json(output_dir / "metrics.json", report)
    return report
