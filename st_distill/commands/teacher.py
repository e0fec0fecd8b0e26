"""``st-distill teacher``: score (query, document) pairs with one or several teachers into a resumable cache.

Examples::

    # raw logits of a CrossEncoder for the BM25 top-50 of TREC DL 2021, cached, written as a run
    st-distill teacher --queries dl21/queries.tsv --corpus dl21/passages.tsv \\
        --run dl21/run.bm25.top100.trec --depth 50 \\
        --cross-encoder cross-encoder/ms-marco-MiniLM-L12-v2 --cache cache/dl21 --output dl21.teacher.trec

    # an ensemble of a CrossEncoder and a bi-encoder on standardised scores; re-running resumes
    st-distill teacher --beir scifact --split train --run scifact.bm25.trec --depth 20 \\
        --cross-encoder models/ce --bi-encoder models/bi --ensemble zscore --cache cache/scifact

    # a causal-LM reranker (yes/no log-odds); builds from this cache use per-query z-scores as targets
    st-distill teacher --beir scifact --run scifact.bm25.trec --depth 20 \\
        --cross-encoder Qwen/Qwen3-Reranker-0.6B --normalize zscore --cache cache/scifact-qwen

The cache is keyed by the teachers' weights and the texts: a changed model or passage is scored
again. A shard that fails its checksum stops the run naming it; ``--repair`` moves it aside and
scores its pairs again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from st_distill.commands.arguments import positive_int
from st_distill.data.formats import load_beir, read_texts, read_trec_run, top_k, write_trec_run
from st_distill.data.normalize import NORMALIZATIONS, normalize_table, table_run
from st_distill.io import refuse_output_over_input, require_output_file, require_output_folder
from st_distill.models import resolve_model

HELP = "score (query, doc) pairs with CrossEncoder / bi-encoder teachers into a resumable, content-keyed cache"


def add_text_arguments(parser: argparse.ArgumentParser) -> None:
    """Where queries and documents come from: a BEIR folder, or two files (``.tsv`` / ``.jsonl``)."""
    group = parser.add_argument_group("texts")
    group.add_argument("--beir", metavar="DIR", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    group.add_argument("--split", default="train", help="BEIR qrels split (default train)")
    group.add_argument("--queries", metavar="FILE", help="queries: id<TAB>text .tsv or BEIR .jsonl")
    group.add_argument("--corpus", metavar="FILE", help="documents: id<TAB>text .tsv or BEIR .jsonl")


def text_inputs(args: argparse.Namespace) -> dict[str, str | None]:
    """The text files a command reads, by option (a BEIR folder's files spelled out), for
    :func:`st_distill.io.refuse_output_over_input`."""
    if getattr(args, "beir", None):
        folder = Path(args.beir)
        split = getattr(args, "split", None)
        files = {
            "--beir (corpus.jsonl)": folder / "corpus.jsonl",
            "--beir (queries.jsonl)": folder / "queries.jsonl",
            f"--beir (qrels/{split}.tsv)": folder / "qrels" / f"{split}.tsv",
        }
        return {**{k: str(v) for k, v in files.items()}, "--queries": getattr(args, "queries", None)}
    return {"--queries": getattr(args, "queries", None), "--corpus": getattr(args, "corpus", None)}


def load_texts(args: argparse.Namespace):
    """``(queries, corpus, qrels_or_None)`` from ``--beir`` or ``--queries``/``--corpus``."""
    if args.beir:
        beir = load_beir(args.beir, args.split)
        return beir.queries, beir.corpus, beir.qrels
    if not (args.queries and args.corpus):
        raise ValueError("give --beir DIR, or both --queries FILE and --corpus FILE")
    return read_texts(args.queries), read_texts(args.corpus), None


def _model_spec(spec: str) -> tuple[str, str | None]:
    """``MODEL[@REVISION]`` -> ``(resolved MODEL, REVISION)``; MODEL as :func:`st_distill.models.resolve_model` takes it."""
    name, _, revision = spec.partition("@")
    return resolve_model(name), revision or None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_text_arguments(parser)
    pairs = parser.add_argument_group("pairs")
    pairs.add_argument("--run", required=True, metavar="FILE", help="TREC run whose (query, doc) pairs are scored")
    pairs.add_argument("--depth", type=positive_int, help="score only each query's top DEPTH documents of the run")
    teachers = parser.add_argument_group("teachers (one or more)")
    teachers.add_argument("--cross-encoder", action="append", default=[], metavar="MODEL[@REV]",
                          help="CrossEncoder teacher (raw logits): hub id, local folder or package:MODULE; repeat for several")
    teachers.add_argument("--bi-encoder", action="append", default=[], metavar="MODEL[@REV]",
                          help="SentenceTransformer teacher (similarity); repeat for several")
    teachers.add_argument("--similarity", choices=["cosine", "dot"], default="cosine", help="bi-encoder score (default cosine)")
    teachers.add_argument("--max-length", type=positive_int, help="maximum sequence length of every teacher")
    teachers.add_argument("--batch-size", type=positive_int, default=64, help="pairs per forward pass (default 64)")
    teachers.add_argument("--device", help="e.g. cpu, cuda (default: the library's choice)")
    parser.add_argument("--cache", required=True, metavar="DIR", help="cache folder (Parquet shards + manifest.json)")
    parser.add_argument("--ensemble", choices=["mean", "zscore"], default="mean", help="how several teachers combine")
    parser.add_argument("--shard-size", type=positive_int, default=4096, help="pairs per cache shard (default 4096)")
    parser.add_argument(
        "--normalize", choices=NORMALIZATIONS, default="raw",
        help="how builds from this cache turn the raw scores into targets (recorded in the manifest; the cache "
        "keeps raw scores, so changing it never rescores): per-query minmax / zscore / rank, global-zscore, "
        "sigmoid, or raw (default)",
    )
    parser.add_argument("--repair", action="store_true", help="move shards that fail their checksum aside and rescore their pairs")
    parser.add_argument("--output", metavar="FILE", help="also write the (ensemble) scores, normalised, as a TREC run")


def run(args: argparse.Namespace) -> int:
    # here, not at the top: +110 ms on `st-distill --help` (measured)
    from st_distill.teachers import BiEncoderTeacher, CrossEncoderTeacher, score_with_teachers

    if not (args.cross_encoder or args.bi_encoder):
        raise ValueError("give at least one --cross-encoder or --bi-encoder teacher")
    refuse_output_over_input({"--output": args.output, "--cache": args.cache}, {**text_inputs(args), "--run": args.run})
    require_output_folder(args.cache)  # before any scoring: a file there would fail only at the end
    if args.output:
        require_output_file(args.output)
    queries, corpus, _ = load_texts(args)
    pairs = top_k(read_trec_run(args.run), args.depth)
    common = dict(max_length=args.max_length, batch_size=args.batch_size, device=args.device)
    teachers = [CrossEncoderTeacher(name, revision=rev, **common) for name, rev in map(_model_spec, args.cross_encoder)]
    teachers += [
        BiEncoderTeacher(name, similarity=args.similarity, revision=rev, **common)
        for name, rev in map(_model_spec, args.bi_encoder)
    ]
    result = score_with_teachers(
        teachers, pairs, queries, corpus, args.cache, ensemble=args.ensemble, shard_size=args.shard_size,
        normalize=args.normalize, repair=args.repair,
    )
    for teacher in teachers:
        print(f"{teacher.name}: {result.scored[teacher.name]} pairs scored, {result.cached[teacher.name]} from the cache")
    if args.output:
        write_trec_run(table_run(normalize_table(result.table(), args.normalize)), args.output, tag="st-distill-teacher")
        print(f"wrote {result.pairs.num_rows} scores (normalize: {args.normalize}) to {args.output}")
    return 0
