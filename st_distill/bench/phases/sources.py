"""Sources phase: read training sources and evaluation suites; make first-stage runs where asked."""

from __future__ import annotations

import logging
from pathlib import Path

from st_distill._deprecated import alias_names
from st_distill.bench.config import CollectionConfig
from st_distill.data.download import fetch_beir
from st_distill.data.formats import Collection, Texts, load_beir, read_qrels, read_texts, read_trec_run, top_k, write_trec_run
from st_distill.data.sources import load_ir_dataset
from st_distill.evaluation import bm25_retrieve

logger = logging.getLogger(__name__)

__all__ = ["load_collection"]


#: ``Loaded``: the bench's own collection record before st_distill.data.formats.Collection (0.1)
__getattr__ = alias_names(__name__, "st_distill.data.formats", Loaded=Collection)


def load_collection(c: CollectionConfig, workdir: Path, depth: int) -> Collection:
    """Reads a training source or evaluation suite; makes its first-stage run when the config asks.

    Only judged queries are kept (the first ``max_queries`` of them, in qrels order, when set);
    the run is cut to its top-``depth`` documents per query.
    """
    provided_run = None
    if c.ir_datasets is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        irds = load_ir_dataset(c.ir_datasets, workdir / "corpus.arrow", with_run=c.run is None and c.first_stage is None)
        queries, corpus, qrels, provided_run = irds.queries, irds.corpus, irds.qrels, irds.run
    elif c.beir is not None:
        beir = load_beir(fetch_beir(c.beir) if isinstance(c.beir, str) else c.beir, c.split)
        queries, corpus, qrels = beir.queries, beir.corpus, beir.qrels
    else:
        queries, corpus, qrels = read_texts(c.queries), read_texts(c.corpus), read_qrels(c.qrels)
    judged = [qid for qid in qrels if qid in queries][: c.max_queries]
    queries = {qid: queries[qid] for qid in judged}
    qrels = {qid: qrels[qid] for qid in judged}
    if c.run is not None:
        full_run = read_trec_run(c.run)
    elif c.first_stage is not None:
        full_run = read_trec_run(_first_stage_run(c, queries, corpus, workdir, depth))
    elif provided_run is not None:
        full_run = provided_run
    else:
        raise ValueError(f"{c.name}: {c.ir_datasets} provides no first-stage run (scoreddocs); give 'run' or first_stage")
    run = top_k({qid: docs for qid, docs in full_run.items() if qid in queries}, depth)
    if not run:
        raise ValueError(f"{c.name}: no query of the first-stage run has judgements")
    return Collection(name=c.name, queries=queries, corpus=corpus, qrels=qrels, run=run, relevance_level=c.relevance_level)


def _first_stage_run(c: CollectionConfig, queries: Texts, corpus: Texts, workdir: Path, depth: int) -> Path:
    """Makes (once) the first-stage run a collection asks for, with ``st-distill retrieve``'s code."""
    path = workdir / f"run.{c.first_stage}.top{depth}.trec"
    if not path.is_file():
        logger.info("%s: BM25 retrieval of %d queries over %d documents", c.name, len(queries), len(corpus))
        write_trec_run(bm25_retrieve(corpus, queries, top_k=depth), path, tag="bm25")
    return path
