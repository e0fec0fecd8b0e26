"""``st-distill mteb``: evaluate a CrossEncoder with MTEB, and write its ModelMeta for submission.

Examples::

    # MTEB Reranking tasks (their own candidates) and a local SciFact re-ranked over a BM25 run
    st-distill mteb evaluate runs/my-model --tasks SciDocsRR \\
        --output-folder mteb-results --model-name me/my-model
    st-distill mteb evaluate runs/my-model --tasks SciFact=../shared/data/scifact \\
        --first-stage SciFact=runs/scifact.bm25.trec --top-k 100

    # the ModelMeta for MTEB's model registry, as a Python module
    st-distill mteb meta runs/my-model --name me/my-model --revision <hub commit> \\
        --cell-metadata runs/my-model/cell.json --license apache-2.0 --output my_model.py
"""

from __future__ import annotations

import argparse
import json

from st_distill.commands.arguments import positive_int
from st_distill.io import write_json
from st_distill.models import load_cross_encoder, model_argument

HELP = "evaluate a CrossEncoder with MTEB (reranking over a first stage) and write its ModelMeta"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the ``evaluate`` and ``meta`` actions and their arguments."""
    actions = parser.add_subparsers(dest="mteb_action", metavar="ACTION", required=True)

    evaluate = actions.add_parser("evaluate", help="run mteb.evaluate; results go to an MTEB results cache")
    evaluate.add_argument("model", type=model_argument, help="CrossEncoder: hub id, local folder, or package:MODULE")
    evaluate.add_argument(
        "--tasks", nargs="+", required=True, metavar="TASK",
        help="MTEB task names (e.g. SciDocsRR), local BEIR folders, or NAME=FOLDER (a local copy of task NAME)",
    )
    evaluate.add_argument(
        "--first-stage", action="append", default=[], metavar="[TASK=]SOURCE",
        help="what to re-rank: a TREC run file, a folder of MTEB {Task}_predictions.json files, or an MTEB "
        "model name run as first stage; TASK=SOURCE gives one per task (repeat). Omit for Reranking tasks",
    )
    evaluate.add_argument("--top-k", type=positive_int, default=100, help="first-stage candidates re-ranked per query (default 100)")
    evaluate.add_argument("--output-folder", default="mteb-results", help="MTEB results cache folder (default mteb-results)")
    evaluate.add_argument("--model-name", help="organization/model to file results under (default local/<folder>)")
    evaluate.add_argument("--revision", help="model revision to record (default: a hash of local weights)")
    evaluate.add_argument("--batch-size", type=positive_int, default=32, help="pairs per forward pass (default 32)")
    evaluate.add_argument("--keep-existing", action="store_true", help="reuse results already in the cache")
    evaluate.add_argument("--scores", help="also write {task: {metric: value}} to this JSON file")

    meta = actions.add_parser("meta", help="write the model's mteb ModelMeta as a Python module")
    meta.add_argument("model", type=model_argument, help="CrossEncoder: hub id, local folder, or package:MODULE")
    meta.add_argument("--name", required=True, help="hub id the model is published under (organization/model)")
    meta.add_argument("--revision", help="hub commit of the published weights")
    meta.add_argument("--cell-metadata", help="the bench cell's metadata JSON (teacher, datasets, backbone, ...)")
    meta.add_argument("--license", help="licence, as MTEB spells it (e.g. apache-2.0, mit)")
    meta.add_argument("--release-date", help="YYYY-MM-DD (default today)")
    meta.add_argument("--output", required=True, help="the Python file to write")


def _first_stages(specs: list[str]) -> object:
    """``[]`` -> None; ``["SOURCE"]`` -> SOURCE; ``["TASK=SOURCE", ...]`` -> {TASK: SOURCE}."""
    if not specs:
        return None
    if len(specs) == 1 and "=" not in specs[0]:
        return specs[0]
    stages = {}
    for spec in specs:
        task, sep, source = spec.partition("=")
        if not sep or not task or not source:
            raise ValueError(f"--first-stage {spec!r}: with several first stages, write each as TASK=SOURCE")
        stages[task] = source
    return stages


def run(args: argparse.Namespace) -> int:
    """Runs the chosen action."""
    # imported here, not at the top: mteb (and torch under it) take seconds to import, and the
    # parser is built for every ``st-distill --help``
    # here, not at the top: +5 s on `st-distill --help` (mteb, torch; measured)
    from st_distill.evaluation.mteb import evaluate_mteb
    from st_distill.evaluation.submission import model_meta, write_model_meta_source

    if args.mteb_action == "evaluate":
        # the model is loaded by evaluate_mteb, after its names and tasks are checked
        scores = evaluate_mteb(
            args.model,
            args.tasks,
            first_stage=_first_stages(args.first_stage),
            top_k=args.top_k,
            output_folder=args.output_folder,
            model_name=args.model_name,
            revision=args.revision,
            batch_size=args.batch_size,
            overwrite=not args.keep_existing,
        )
        if args.scores:
            write_json(args.scores, scores)
        for task, metrics in scores.items():
            print(f"{task}\tmain_score={metrics['main_score']:.4f}\tndcg_at_10={metrics.get('ndcg_at_10', float('nan')):.4f}")
        print(f"results in {args.output_folder}/results")
        return 0

    overrides = {key: value for key, value in (("license", args.license), ("release_date", args.release_date)) if value}
    meta = model_meta(
        load_cross_encoder(args.model), name=args.name, revision=args.revision, cell_metadata=args.cell_metadata, **overrides
    )
    path = write_model_meta_source(meta, args.output)
    print(json.dumps({"written": str(path), "name": meta.name, "n_parameters": meta.n_parameters}))
    return 0
