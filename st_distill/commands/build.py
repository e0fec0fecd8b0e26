"""``st-distill build``: build the training dataset of one objective and save it with a JSON report.

Examples::

    # InfoNCE: 7 negatives sampled uniformly from the BM25 top-100, TREC DL judgements (relevant: grade >= 2)
    st-distill build infonce --queries dl21/queries.tsv --corpus dl21/passages.tsv --qrels dl21/qrels.txt \\
        --negatives-run dl21/run.bm25.top100.trec --negatives-per-query 7 --depth 100 --strategy uniform \\
        --relevance-threshold 2 --output data/dl21-infonce

    # ADR-MSE on an LLM ranking (order -> descending pseudo-scores)
    st-distill build adrmse --queries queries.tsv --corpus collection.tsv \\
        --llm-ranking rankzephyr.run --output data/adrmse

    # pointwise MSE on raw teacher logits: each query's top 32 candidates, one row per pair
    st-distill build mse --queries queries.tsv --corpus collection.tsv --candidates bm25.trec \\
        --teacher-cache cache/teacher --candidates-per-query 32 --output data/mse

    # MarginMSE at MS MARCO scale from Hofstätter's teacher file, texts joined lazily
    st-distill build marginmse --queries queries.train.tsv --corpus collection.tsv \\
        --triples bert_cat_ensemble_msmarcopassage_train_scores_ids.tsv --lazy --output data/marginmse
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from st_distill.commands.arguments import non_negative_int, positive_int
from st_distill.commands.teacher import add_text_arguments, load_texts, text_inputs
from st_distill.data.formats import Collection, read_qrels, read_trec_run
from st_distill.data.normalize import NORMALIZATIONS
from st_distill.io import refuse_output_over_input, require_output_folder

HELP = "build the datasets.Dataset of a training objective (memory-mappable Arrow file + JSON report)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("objective", help="registry objective, e.g. bce, hinge, marginmse, infonce, distillranknet, adrmse, kldistill, mse")
    add_text_arguments(parser)
    labels = parser.add_argument_group("labels and candidates")
    labels.add_argument("--qrels", metavar="FILE", help="judgements (TREC or BEIR qrels); default: the BEIR split's")
    labels.add_argument("--relevance-threshold", type=positive_int, default=1, help="lowest relevant grade (TREC DL passage: 2)")
    labels.add_argument("--negatives-run", metavar="FILE", help="first-stage run to take negatives from")
    labels.add_argument(
        "--negatives-per-query", type=positive_int, metavar="N", help="negatives taken per query from --negatives-run (default 7)"
    )
    labels.add_argument("--negatives", type=positive_int, dest="negatives_deprecated", help=argparse.SUPPRESS)
    labels.add_argument("--depth", type=positive_int, help="look only at the top DEPTH of --negatives-run")
    labels.add_argument(
        "--strategy", choices=["top", "uniform"], default="top", help="top-k, or a uniform sample from the top DEPTH"
    )
    labels.add_argument("--candidates", metavar="FILE", help="listwise: run whose top documents form each list")
    labels.add_argument("--llm-ranking", metavar="FILE", help="listwise: LLM ranking (TREC run); order -> pseudo-scores")
    teacher = parser.add_argument_group("teacher scores")
    teacher.add_argument("--teacher-cache", metavar="DIR", help="cache folder written by st-distill teacher")
    teacher.add_argument("--teacher-run", metavar="FILE", help="teacher scores as a TREC run (st-distill teacher --output)")
    teacher.add_argument("--triples", metavar="FILE", help="Hofstätter-style file: pos_score neg_score qid pos_pid neg_pid")
    teacher.add_argument(
        "--normalize", choices=NORMALIZATIONS,
        help="how teacher scores become targets (default: the one recorded in --teacher-cache, else raw)",
    )
    shape = parser.add_argument_group("shape")
    shape.add_argument("--negatives-per-row", type=positive_int, metavar="N",
                       help="ntuple objectives: negatives per row; bce: negative rows per positive (default: the registry's)")
    shape.add_argument("--list-size", type=positive_int, metavar="N", help="listwise objectives: documents per list (default: the registry's)")
    shape.add_argument("--candidates-per-query", type=positive_int, metavar="N",
                       help="mse: ranked candidates (rows) per query (default: the registry's)")
    shape.add_argument("--n-negatives", type=positive_int, help=argparse.SUPPRESS)
    shape.add_argument("--max-positives", type=positive_int, help="at most this many positives per query")
    shape.add_argument("--max-queries", type=positive_int, help="use only the first N queries that give rows")
    shape.add_argument("--seed", type=non_negative_int, default=0)
    shape.add_argument("--lazy", action="store_true", help="store ids and join texts on access (text stores in OUTPUT/texts)")
    shape.add_argument(
        "--ids", action="store_true",
        help="store string ids (query_id, doc_ids, ...) for sentence-transformers' util.resolve_ids instead of texts",
    )
    shape.add_argument("--skip-invalid", action="store_true", help="skip bad lines of --triples with a counted warning")
    parser.add_argument(
        "--output", required=True, metavar="DIR", help="folder for dataset.arrow, report.json (and texts/ when --lazy)"
    )


def _stores(args: argparse.Namespace):
    """Text stores in OUTPUT/texts for a lazy build (from --beir or the --queries/--corpus files)."""
    from st_distill.data.store import TextStore  # here, not at the top: +35 ms (pyarrow) on `st-distill --help` (measured)

    folder = Path(args.output) / "texts"
    if args.beir:
        sources = (Path(args.beir) / "queries.jsonl", Path(args.beir) / "corpus.jsonl")
    elif args.queries and args.corpus:
        sources = (Path(args.queries), Path(args.corpus))
    else:
        raise ValueError("give --beir DIR, or both --queries FILE and --corpus FILE")
    queries = TextStore.from_file(sources[0], folder / "queries.arrow")
    corpus = TextStore.from_file(sources[1], folder / "corpus.arrow")
    return queries, corpus


def _outputs(folder: str) -> dict[str, str]:
    """The output folder and every file a build writes there."""
    from st_distill.dataset import DATASET_FILE, LAZY_FILE, REPORT_FILE  # here: +45 ms on `st-distill --help` (measured)

    files = (DATASET_FILE, REPORT_FILE, LAZY_FILE, "texts/queries.arrow", "texts/corpus.arrow")
    return {"--output": folder, **{f"--output ({name})": str(Path(folder) / name) for name in files}}


def _inputs(args: argparse.Namespace) -> dict[str, str | None]:
    """Every file or folder a build reads, by option."""
    names = ("qrels", "negatives_run", "candidates", "llm_ranking", "teacher_cache", "teacher_run", "triples")
    return {**text_inputs(args), **{"--" + name.replace("_", "-"): getattr(args, name) for name in names}}


#: Deprecated flags: ``old flag -> (attribute, what replaces it)``.
DEPRECATED = {"--negatives": ("negatives_deprecated", "--negatives-per-query"),
              "--n-negatives": ("n_negatives", "--negatives-per-row, --list-size or --candidates-per-query")}


def _negatives_per_query(args: argparse.Namespace) -> int | None:
    """--negatives-per-query, or the deprecated --negatives (warned about); None when neither is given."""
    for flag, (attribute, replacement) in DEPRECATED.items():
        if getattr(args, attribute) is not None:
            print(f"st-distill build: warning: {flag} is deprecated, use {replacement}", file=sys.stderr)
    if args.negatives_deprecated is not None and args.negatives_per_query is not None:
        raise ValueError("give --negatives-per-query or the deprecated --negatives, not both")
    return args.negatives_per_query if args.negatives_per_query is not None else args.negatives_deprecated


def run(args: argparse.Namespace) -> int:
    # here, not at the top: +190 ms on `st-distill --help` (dataset, teacher_files, teachers; measured)
    from st_distill.dataset import build_from_sources, save_dataset
    from st_distill.data.teacher_files import read_llm_ranking
    from st_distill.teachers import load_cached_scores

    per_query = _negatives_per_query(args)
    refuse_output_over_input(_outputs(args.output), _inputs(args))
    require_output_folder(args.output)
    if args.lazy:
        queries, corpus = _stores(args)
        qrels = read_qrels(Path(args.beir) / "qrels" / f"{args.split}.tsv") if args.beir and not args.qrels else None
    else:
        queries, corpus, qrels = load_texts(args)
    if args.qrels:
        qrels = read_qrels(args.qrels)
    if args.candidates and args.llm_ranking:
        raise ValueError("give --candidates or --llm-ranking, not both")
    candidates = None
    if args.llm_ranking:
        candidates = read_llm_ranking(args.llm_ranking)
    elif args.candidates:
        candidates = read_trec_run(args.candidates)
    if args.teacher_cache and args.teacher_run:
        raise ValueError("give --teacher-cache or --teacher-run, not both")
    teacher_scores = load_cached_scores(args.teacher_cache, queries=queries, corpus=corpus).table() if args.teacher_cache else None
    if args.teacher_run:
        teacher_scores = read_trec_run(args.teacher_run)
    collection = Collection(queries=queries, corpus=corpus, qrels=qrels, relevance_level=args.relevance_threshold)
    dataset, report = build_from_sources(
        args.objective, collection, negatives_run=read_trec_run(args.negatives_run) if args.negatives_run else None,
        negatives_per_query=per_query, depth=args.depth, strategy=args.strategy,
        candidates=candidates, teacher_scores=teacher_scores, triples=args.triples, n_negatives=args.n_negatives,
        negatives_per_row=args.negatives_per_row, list_size=args.list_size, candidates_per_query=args.candidates_per_query,
        max_positives=args.max_positives, max_queries=args.max_queries,
        seed=args.seed, lazy=args.lazy, skip_invalid=args.skip_invalid, ids=args.ids, normalize=args.normalize,
    )
    save_dataset(dataset, report, args.output)
    keys = ("objective", "columns", "queries", "rows", "skipped", "lazy", "ids", "normalize")
    print(json.dumps({k: report.to_dict()[k] for k in keys}, indent=2))
    return 0
