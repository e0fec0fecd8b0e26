"""Hard negatives: from a first-stage run, or mined with a bi-encoder.

Negatives are ``{qid: [docid, ...]}`` in first-stage rank order. Two sources:

- :func:`negatives_from_run`: the top-k non-relevant documents of a run, or a uniform
  sample of k from the top-K (the study's InfoNCE data: 7 negatives sampled from the
  ColBERTv2 top-500). Judged-relevant documents are excluded. Sampling uses one random
  generator per query, seeded from ``(seed, qid)``, so a query's negatives do not depend
  on which other queries are in the run or on their order.
- :func:`denoise_candidates`: a run without the candidates a teacher scores as high as the query's
  relevant documents (likely unjudged positives), RocketQA's denoised hard negatives.
- :func:`mine_negatives`: sentence-transformers' :func:`~sentence_transformers.util.mine_hard_negatives`
  (optionally with faiss) over a corpus, with the results mapped back to document ids.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Container, Mapping
from typing import TYPE_CHECKING, Literal

import numpy as np

from st_distill.data.formats import Qrels, Run, ranked
from st_distill.data.normalize import normalize_run

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

Negatives = dict[str, list[str]]


def query_rng(seed: int, qid: str) -> np.random.Generator:
    """A random generator that depends only on ``seed`` and ``qid`` (not on Python's salted ``hash``)."""
    digest = hashlib.sha256(qid.encode("utf-8")).digest()
    return np.random.default_rng([seed & 0xFFFFFFFF, int.from_bytes(digest[:8], "little")])


def relevant(qrels: Qrels | None, qid: str, relevance_threshold: int = 1) -> set[str]:
    """The documents judged relevant (grade >= ``relevance_threshold``) for ``qid``."""
    if not qrels:
        return set()
    return {docid for docid, grade in qrels.get(qid, {}).items() if grade >= relevance_threshold}


def sparse_labels(qrels: Qrels, relevance_threshold: int = 1, seed: int = 0, documents: Container[str] | None = None) -> Qrels:
    """MS MARCO-shaped training labels from deeper judgements: one relevant document per query.

    MS MARCO's training queries have about one judged passage each, and the rest of a
    first-stage run is unjudged, so negatives drawn from it include relevant passages. TREC
    DL-style judgements grade most of a run's top; keeping one relevant document per query (drawn
    with :func:`query_rng`, so independent of the other queries) and dropping every other
    judgement makes the other candidates negatives as unjudged passages are there.

    Args:
        qrels: ``{qid: {docid: grade}}``.
        relevance_threshold: Lowest grade that counts as relevant.
        seed: Seed of the draw.
        documents: The documents that can be used (a corpus): the draw is among the relevant
            documents in it, so a query keeps a positive when one of its relevant documents has a text.

    Returns:
        ``{qid: {docid: grade}}`` with one relevant document for every query that has one; queries
        without one are left out.
    """
    out: Qrels = {}
    for qid, grades in qrels.items():
        positives = sorted(d for d in relevant(qrels, qid, relevance_threshold) if documents is None or d in documents)
        if positives:
            docid = positives[int(query_rng(seed, qid).integers(len(positives)))]
            out[qid] = {docid: grades[docid]}
    return out


def negatives_from_run(
    run: Run,
    qrels: Qrels | None = None,
    k: int = 7,
    depth: int | None = None,
    strategy: Literal["top", "uniform"] = "top",
    relevance_threshold: int = 1,
    seed: int = 0,
) -> Negatives:
    """Selects hard negatives from a first-stage run.

    Candidates are a query's documents in rank order (score descending, trec_eval's tie
    order), cut to the first ``depth``, minus the judged-relevant ones. ``strategy="top"``
    keeps the first ``k`` candidates; ``strategy="uniform"`` draws ``k`` of them uniformly
    without replacement (the study: ``k=7, depth=500``). A query with fewer than ``k``
    candidates keeps all of them; the dataset builder then decides (and reports) whether that
    is enough.

    Args:
        run: First-stage run ``{qid: {docid: score}}``.
        qrels: Judgements; documents with grade >= ``relevance_threshold`` are never negatives.
        k: Negatives per query.
        depth: How deep in the ranking to look (``None``: the whole run).
        strategy: ``"top"`` or ``"uniform"``.
        relevance_threshold: Lowest grade that counts as relevant (TREC DL passage: 2).
        seed: Seed of the per-query random generators (``uniform`` only).

    Returns:
        ``{qid: [docid, ...]}`` in rank order, for every query of the run that has a candidate.

    Raises:
        ValueError: On ``k < 1``, ``depth < 1`` or an unknown strategy.
    """
    if k < 1 or (depth is not None and depth < 1):
        raise ValueError(f"k and depth must be positive, got k={k}, depth={depth}")
    if strategy not in ("top", "uniform"):
        raise ValueError(f"unknown strategy {strategy!r}: expected 'top' or 'uniform'")
    negatives: Negatives = {}
    for qid, docs in run.items():
        exclude = relevant(qrels, qid, relevance_threshold)
        candidates = [docid for docid, _ in ranked(docs)[:depth] if docid not in exclude]
        if not candidates:
            continue
        if strategy == "uniform" and len(candidates) > k:
            picked = np.sort(query_rng(seed, qid).choice(len(candidates), size=k, replace=False))
            candidates = [candidates[index] for index in picked]
        negatives[qid] = candidates[:k]
    return negatives


def denoise_candidates(
    run: Run, qrels: Qrels | None, teacher: Mapping[str, Mapping[str, float]], margin: float, relevance_threshold: int = 1
) -> Run:
    """A run without the candidates that a teacher scores close to, or above, the query's relevant documents.

    With sparse labels (MS MARCO's one judged passage per query), many first-stage candidates are
    relevant but unjudged, so negatives drawn from them are false negatives. Standardising all of
    ``teacher``'s scores together (``"global-zscore"``, :func:`st_distill.data.normalize.normalize_run`), a candidate that is not
    judged relevant is dropped when its score is at least ``best - margin``, ``best`` the highest
    score of the query's judged-relevant candidates (RocketQA's denoising, with a teacher score in
    place of a cross-encoder probability). Judged-relevant documents, candidates the teacher did
    not score and queries without a scored relevant candidate are kept as they are.

    Args:
        run: Candidates ``{qid: {docid: first-stage score}}``.
        qrels: Judgements; grade >= ``relevance_threshold`` is relevant.
        teacher: Teacher scores ``{qid: {docid: score}}`` of (some of) the candidates.
        margin: How far below the best relevant candidate, in standard deviations of the teacher's
            scores, a candidate must stay to remain a negative; ``0`` drops only those scored above it.
        relevance_threshold: Lowest grade that counts as relevant.

    Returns:
        The run with the dropped candidates left out (first-stage scores kept).

    Raises:
        ValueError: On a negative or non-finite ``margin``, or teacher scores that are not finite or all equal.
    """
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    values = np.array([score for docs in teacher.values() for score in docs.values()], dtype=np.float64)
    if not values.size or not np.isfinite(values).all() or values.std() == 0:
        raise ValueError("teacher scores must be finite and not all equal to denoise candidates")
    standard = normalize_run(teacher, "global-zscore")
    out: Run = {}
    for qid, docs in run.items():
        scored = standard.get(qid, {})
        judged = relevant(qrels, qid, relevance_threshold)
        positives = [scored[d] for d in docs if d in judged and d in scored]
        if not positives:
            out[qid] = dict(docs)
            continue
        bar = max(positives) - margin
        out[qid] = {d: s for d, s in docs.items() if d in judged or d not in scored or scored[d] < bar}
    return out


def mine_negatives(
    model: SentenceTransformer,
    queries: Mapping[str, str],
    corpus: Mapping[str, str],
    qrels: Qrels,
    num_negatives: int = 7,
    range_min: int = 0,
    range_max: int | None = None,
    sampling_strategy: Literal["top", "random"] = "top",
    relevance_threshold: int = 1,
    use_faiss: bool = True,
    batch_size: int = 32,
    seed: int = 0,
    **kwargs,
) -> Negatives:
    """Mines hard negatives with a bi-encoder through sentence-transformers' ``mine_hard_negatives``.

    Every judged-relevant ``(query, document)`` pair with both texts known becomes an
    anchor/positive pair; the library embeds the corpus and the queries, retrieves the nearest
    documents (with faiss when ``use_faiss``), skips the positives and picks ``num_negatives``
    per pair. The mined texts are mapped back to document ids (a text shared by several
    documents maps to the first of them) and any judged-relevant document is dropped.

    Args:
        model: The bi-encoder.
        queries: ``{qid: text}``.
        corpus: ``{docid: text}``: the candidate negatives.
        qrels: Judgements giving the positives.
        num_negatives: Negatives per (query, positive) pair.
        range_min: Skip this many nearest documents first.
        range_max: Look no further than this rank (library default when None).
        sampling_strategy: ``"top"`` (nearest first) or ``"random"`` (uniform within the range).
        relevance_threshold: Lowest grade that counts as relevant.
        use_faiss: Search with faiss instead of a dense matrix product.
        batch_size: Encoding batch size.
        seed: Seeds Python's, NumPy's and torch's generators for ``"random"`` sampling.
        **kwargs: Passed on to ``mine_hard_negatives`` (e.g. ``relative_margin``, ``max_score``).

    Returns:
        ``{qid: [docid, ...]}``, negatives of all the query's positives, first occurrence order.
    """
    import torch
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    anchors, positives, qids = [], [], []
    for qid, docs in qrels.items():
        if qid not in queries:
            continue
        for docid in sorted(relevant(qrels, qid, relevance_threshold)):
            if docid in corpus:
                anchors.append(queries[qid])
                positives.append(corpus[docid])
                qids.append(qid)
    if not anchors:
        raise ValueError("no judged-relevant (query, document) pair has both texts: nothing to mine from")
    text_to_id: dict[str, str] = {}
    for docid, text in corpus.items():
        text_to_id.setdefault(text, docid)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    mined = mine_hard_negatives(
        Dataset.from_dict({"query": anchors, "positive": positives}),
        model,
        anchor_column_name="query",
        positive_column_name="positive",
        corpus=list(text_to_id),
        range_min=range_min,
        range_max=range_max,
        num_negatives=num_negatives,
        sampling_strategy=sampling_strategy,
        output_format="n-tuple",
        use_faiss=use_faiss,
        batch_size=batch_size,
        verbose=False,
        **kwargs,
    )
    query_of_text = {}
    for qid, anchor in zip(qids, anchors):
        query_of_text.setdefault(anchor, set()).add(qid)
    negative_columns = [name for name in mined.column_names if name.startswith("negative")]
    negatives: Negatives = {}
    for row in mined:
        for qid in sorted(query_of_text[row["query"]]):
            exclude = relevant(qrels, qid, relevance_threshold)
            docs = negatives.setdefault(qid, [])
            for name in negative_columns:
                docid = text_to_id[row[name]]
                if docid not in exclude and docid not in docs:
                    docs.append(docid)
    return negatives
