"""The pairs an export uses: a folder of a first-stage run, its queries and corpus, and (for the parity suite) qrels.

A suite folder holds ``queries.tsv`` (or ``queries.jsonl``), ``passages.tsv[.gz]`` (or
``corpus.jsonl[.gz]``), one ``run*.trec`` and, to be evaluated, ``qrels.txt[.gz]``, as the packaged
TREC DL samples do (``resource://quickstart/trec-dl-2019``, ``resource://quickstart/trec-dl-2021``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from st_distill.data.formats import Qrels, Run, Texts, read_qrels, read_texts, read_trec_run
from st_distill.evaluation.rerank import Candidates, top_candidates
from st_distill.models import resolve_model

__all__ = ["DEFAULT_CALIBRATION", "DEFAULT_SUITE", "Suite", "calibration_pairs", "load_suite"]

#: Parity suite by default: the packaged TREC DL 2019 sample (43 queries, BM25 top-20).
DEFAULT_SUITE = "resource://quickstart/trec-dl-2019"
#: Calibration pairs by default: the packaged TREC DL 2021 sample (the quickstart's training queries).
DEFAULT_CALIBRATION = "resource://quickstart/trec-dl-2021"

_QUERIES = ("queries.tsv", "queries.jsonl")
_CORPUS = ("passages.tsv", "passages.tsv.gz", "corpus.jsonl", "corpus.jsonl.gz", "corpus.tsv", "corpus.tsv.gz")
_QRELS = ("qrels.txt", "qrels.txt.gz", "qrels.tsv")


@dataclass
class Suite:
    """A first-stage run with its texts and, where given, its judgements.

    Attributes:
        name: The folder as given (a ``resource://`` spec or a path).
        run: The first-stage run.
        queries: ``{qid: text}``.
        corpus: ``{docid: text}``.
        qrels: The judgements (``None`` when the folder has none).
    """

    name: str
    run: Run
    queries: Texts
    corpus: Texts
    qrels: Qrels | None

    def candidates(self, depth: int) -> Candidates:
        """Each query's top ``depth`` documents of the run, with their texts."""
        return top_candidates(self.run, self.queries, self.corpus, depth)


def _one(folder: Path, names: tuple[str, ...], what: str, required: bool = True) -> Path | None:
    found = [folder / name for name in names if (folder / name).is_file()]
    if not found and required:
        raise ValueError(f"{folder}: no {what} file (expected one of {', '.join(names)})")
    return found[0] if found else None


def load_suite(spec: str | os.PathLike, need_qrels: bool = False) -> Suite:
    """Loads a suite folder (see the module docstring).

    Args:
        spec: A folder, or a ``resource://`` spec of one shipped in st-distill.
        need_qrels: Refuse a folder without qrels.

    Returns:
        The :class:`Suite`.

    Raises:
        ValueError: When the folder is missing, lacks a file, or holds more than one ``run*.trec``;
            :class:`~st_distill.data.formats.FormatError` (a ``ValueError``) on a malformed file.
    """
    folder = Path(resolve_model(str(spec)))
    if not folder.is_dir():
        raise ValueError(f"{spec}: not a folder of a run, queries, corpus and qrels")
    runs = sorted(folder.glob("run*.trec"))
    if len(runs) != 1:
        raise ValueError(f"{folder}: expected one run*.trec file, found {[p.name for p in runs] or 'none'}")
    queries = _one(folder, _QUERIES, "queries")
    corpus = _one(folder, _CORPUS, "corpus")
    qrels = _one(folder, _QRELS, "qrels", required=need_qrels)
    return Suite(
        name=str(spec),
        run=read_trec_run(runs[0]),
        queries=read_texts(queries),
        corpus=read_texts(corpus),
        qrels=read_qrels(qrels) if qrels is not None else None,
    )


def calibration_pairs(suite: Suite, count: int = 256, depth: int = 20, seed: int = 0) -> list[tuple[str, str]]:
    """A seeded sample of ``count`` distinct (query, document) pairs among the run's top ``depth`` candidates.

    Args:
        suite: The run, queries and corpus.
        count: Pairs to draw (all of them when there are fewer).
        depth: Candidates per query drawn from.
        seed: Seed of the draw.

    Returns:
        The pairs, in the run's order.

    Raises:
        ValueError: When ``count`` or ``depth`` is below 1.
    """
    if count < 1 or depth < 1:
        raise ValueError(f"calibration count and depth must be at least 1, got {count} and {depth}")
    pairs = list(dict.fromkeys(suite.candidates(depth).pairs))
    if len(pairs) <= count:
        return pairs
    chosen = np.sort(np.random.default_rng(seed).choice(len(pairs), size=count, replace=False))
    return [pairs[i] for i in chosen]
