"""``st-distill retrieve``: make a first-stage TREC run with BM25 (bm25s) or a dense bi-encoder (faiss).

Examples::

    # BM25 top-100 over SciFact test queries (English stemming when PyStemmer is installed)
    st-distill retrieve --beir scifact --split test --method bm25 --top-k 100 --output scifact.bm25.trec

    # dense retrieval with a SentenceTransformer, exact cosine search
    st-distill retrieve --corpus passages.tsv --queries queries.tsv --method dense \\
        --model sentence-transformers/all-MiniLM-L6-v2 --output run.dense.trec
"""

from __future__ import annotations

import argparse
import logging

from st_distill.commands.arguments import non_negative_float, positive_int, unit_interval
from st_distill.commands.teacher import text_inputs
from st_distill.data.first_stage import bm25_retrieve, dense_retrieve
from st_distill.data.formats import check_run_ids, load_beir, read_texts, write_trec_run
from st_distill.io import refuse_output_over_input, require_output_file
from st_distill.models import model_argument

logger = logging.getLogger(__name__)

HELP = "make a first-stage TREC run with BM25 (bm25s) or a SentenceTransformer + faiss"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    texts = parser.add_argument_group("texts (a BEIR folder, or two files)")
    texts.add_argument("--beir", metavar="DIR", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    texts.add_argument("--split", default="test",
                       help="with --beir: retrieve for the queries judged in this qrels split (default test)")
    texts.add_argument("--corpus", metavar="FILE", help="documents: id<TAB>text .tsv or BEIR .jsonl")
    texts.add_argument("--queries", metavar="FILE", help="queries: id<TAB>text .tsv or BEIR .jsonl (all are retrieved for)")
    parser.add_argument("--method", choices=["bm25", "dense"], default="bm25", help="retriever (default bm25)")
    parser.add_argument("--output", required=True, metavar="FILE", help="the TREC run to write")
    parser.add_argument("--top-k", type=positive_int, default=100, help="documents per query (default 100)")
    parser.add_argument("--tag", help="run tag (default: the method)")
    bm25 = parser.add_argument_group("bm25")
    bm25.add_argument("--k1", type=non_negative_float, default=0.9, help="BM25 k1, >= 0 (default 0.9)")
    bm25.add_argument("--b", type=unit_interval, default=0.4, help="BM25 b, in [0, 1] (default 0.4)")
    bm25.add_argument("--stemmer", default="english", help="Snowball language, or 'none' (default english)")
    dense = parser.add_argument_group("dense")
    dense.add_argument("--model", type=model_argument,
                       help="SentenceTransformer: Hugging Face id, local folder, or package:MODULE")
    dense.add_argument("--batch-size", type=positive_int, default=64, help="texts per encoding batch (default 64)")
    dense.add_argument("--device", help="torch device (default: the model's choice)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    refuse_output_over_input({"--output": args.output}, text_inputs(args))
    require_output_file(args.output)
    if args.method == "dense" and not args.model:
        raise ValueError("--method dense needs --model")
    if args.beir:
        beir = load_beir(args.beir, args.split)
        corpus, corpus_path = beir.corpus, Path(args.beir) / "corpus.jsonl"
        if args.queries:
            queries, queries_path = read_texts(args.queries), args.queries
        else:
            queries_path = Path(args.beir) / "queries.jsonl"
            queries = {q: beir.queries[q] for q in beir.qrels if q in beir.queries}
            missing = [q for q in beir.qrels if q not in beir.queries]
            if missing:
                logger.warning(
                    "%d of the %d queries judged in qrels/%s.tsv are not in %s (first: %s): no run for them",
                    len(missing), len(beir.qrels), args.split, queries_path, ", ".join(map(repr, missing[:3])),
                )
    elif args.corpus and args.queries:
        corpus, queries = read_texts(args.corpus), read_texts(args.queries)
        corpus_path, queries_path = args.corpus, args.queries
    else:
        raise ValueError("give --beir DIR, or both --corpus FILE and --queries FILE")
    if not queries:
        raise ValueError(f"no query to retrieve for: none of the judged queries is in {queries_path}")
    check_run_ids(corpus, corpus_path, "document")
    check_run_ids(queries, queries_path, "query")
    if args.method == "bm25":
        stemmer = None if args.stemmer.lower() == "none" else args.stemmer
        result = bm25_retrieve(corpus, queries, args.top_k, k1=args.k1, b=args.b, stemmer=stemmer)
    else:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(args.model, device=args.device)
        result = dense_retrieve(model, corpus, queries, args.top_k, batch_size=args.batch_size)
    write_trec_run(result, args.output, tag=args.tag or args.method)
    print(f"wrote {args.output}: {len(result)} queries, top {args.top_k}, {len(corpus)} documents ({args.method})")
    return 0
