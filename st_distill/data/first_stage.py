"""First-stage retrieval, for collections that come without a run: BM25 (bm25s) and dense (faiss).

It lives beside the data it makes runs from (moved from ``st_distill.evaluation.retrieve``, a
deprecated alias now).

Both return a run ``{qid: {docid: score}}`` with the ``top_k`` best documents per query,
ready for :func:`st_distill.data.formats.write_trec_run` and for re-ranking.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np

from st_distill.data.formats import Run, Texts

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

__all__ = ["bm25_retrieve", "dense_retrieve"]


def _stemmer(language: str | None):
    """A PyStemmer stemmer for ``language``, or None when no stemming is asked or PyStemmer is absent."""
    if not language:
        return None
    try:
        import Stemmer
    except ImportError:
        logger.warning("PyStemmer is not installed: BM25 runs without stemming (pip install PyStemmer)")
        return None
    return Stemmer.Stemmer(language)


def _check_inputs(corpus: Texts, queries: Texts, top_k: int) -> int:
    if not corpus:
        raise ValueError("the corpus is empty")
    if not queries:
        raise ValueError("no query to retrieve for")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    return min(top_k, len(corpus))


def bm25_retrieve(
    corpus: Texts,
    queries: Texts,
    top_k: int = 100,
    k1: float = 0.9,
    b: float = 0.4,
    method: str = "lucene",
    stemmer: str | None = "english",
    stopwords: str | None = "en",
    show_progress_bar: bool = False,
) -> Run:
    """Retrieves the ``top_k`` documents of each query with BM25 (the bm25s library).

    Texts are tokenised by bm25s (lower-cased words of two characters or more), with English
    stop words removed and a Snowball stemmer from PyStemmer when it is installed. The
    defaults ``k1=0.9, b=0.4`` are Anserini's, as used for the BEIR BM25 baselines.

    Args:
        corpus: ``{docid: text}``.
        queries: ``{qid: text}``.
        top_k: Documents kept per query (at most the corpus size).
        k1: BM25 term-frequency saturation.
        b: BM25 length normalisation.
        method: bm25s scoring variant (``"lucene"``, ``"robertson"``, ``"atire"``, ``"bm25l"``, ``"bm25+"``).
        stemmer: Snowball language for PyStemmer, or None for no stemming.
        stopwords: bm25s stop-word list (``"en"``) or None.
        show_progress_bar: Show bm25s's progress bars.

    Returns:
        The run; a query whose words are all unknown to the corpus gets documents with score 0.

    Raises:
        ValueError: On an empty corpus or query set, a ``top_k`` below 1, a negative ``k1``, or a
            ``b`` outside [0, 1].
    """
    import bm25s

    k = _check_inputs(corpus, queries, top_k)
    if not (math.isfinite(k1) and k1 >= 0):
        raise ValueError(f"k1 must be a finite number >= 0, got {k1}")
    if not 0 <= b <= 1:
        raise ValueError(f"b must be in [0, 1], got {b}")
    doc_ids = list(corpus)
    stem = _stemmer(stemmer)
    corpus_tokens = bm25s.tokenize(
        [corpus[d] for d in doc_ids], stopwords=stopwords, stemmer=stem, show_progress=show_progress_bar
    )
    retriever = bm25s.BM25(k1=k1, b=b, method=method)
    retriever.index(corpus_tokens, show_progress=show_progress_bar)
    query_ids = list(queries)
    query_tokens = bm25s.tokenize(
        [queries[q] for q in query_ids], stopwords=stopwords, stemmer=stem, return_ids=False, show_progress=show_progress_bar
    )
    indices, scores = retriever.retrieve(query_tokens, k=k, show_progress=show_progress_bar)
    return {
        qid: {doc_ids[i]: float(s) for i, s in zip(indices[row], scores[row])} for row, qid in enumerate(query_ids)
    }


def dense_retrieve(
    model: SentenceTransformer | str,
    corpus: Texts,
    queries: Texts,
    top_k: int = 100,
    batch_size: int = 64,
    show_progress_bar: bool | None = None,
) -> Run:
    """Retrieves the ``top_k`` documents of each query by cosine similarity of SentenceTransformer embeddings.

    Queries and documents are embedded with ``encode_query`` / ``encode_document`` (so a
    model's query and document prompts apply), L2-normalised, and searched exactly with a
    faiss ``IndexFlatIP`` (inner product of unit vectors = cosine similarity).

    Args:
        model: A SentenceTransformer or its name / local path.
        corpus: ``{docid: text}``.
        queries: ``{qid: text}``.
        top_k: Documents kept per query (at most the corpus size).
        batch_size: Texts per encoding batch.
        show_progress_bar: Show the encoding progress bars.

    Returns:
        The run, scores being cosine similarities.

    Raises:
        ValueError: On an empty corpus or query set, or a ``top_k`` or ``batch_size`` below 1.
    """
    import faiss

    k = _check_inputs(corpus, queries, top_k)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if isinstance(model, str):
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(model)
    doc_ids, query_ids = list(corpus), list(queries)
    encode = {"batch_size": batch_size, "show_progress_bar": show_progress_bar, "normalize_embeddings": True}
    doc_emb = np.ascontiguousarray(model.encode_document([corpus[d] for d in doc_ids], **encode), dtype=np.float32)
    query_emb = np.ascontiguousarray(model.encode_query([queries[q] for q in query_ids], **encode), dtype=np.float32)
    index = faiss.IndexFlatIP(doc_emb.shape[1])
    index.add(doc_emb)
    scores, indices = index.search(query_emb, k)
    return {
        qid: {doc_ids[i]: float(s) for i, s in zip(indices[row], scores[row]) if i >= 0}
        for row, qid in enumerate(query_ids)
    }
