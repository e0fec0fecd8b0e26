"""``st-distill bench``: run a grid of objectives x backbones x seeds from a TOML config."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HELP = "run the benchmark grid of a config (default: the packaged quickstart), resumable, then write the report"


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= shard[0] < shard[1]:
        raise argparse.ArgumentTypeError(f"expected 0 <= i < n, got {text!r}")
    return shard


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", nargs="?", default=None,
        help="a TOML config, or the name of a packaged one ('quickstart', the default)",
    )
    parser.add_argument("-o", "--output", default=None, help="results folder (default: the config's output_dir)")
    parser.add_argument("--dry-run", action="store_true", help="validate the config, print the plan, train nothing")
    parser.add_argument("--phase", default=None, help="run only this phase of the config")
    parser.add_argument(
        "--shard", type=_shard, default=(0, 1), metavar="I/N",
        help="run only shard I of N (0-based) of the grid, e.g. $SLURM_ARRAY_TASK_ID/4",
    )
    parser.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    parser.add_argument(
        "--schema", action="store_true",
        help="print the JSON Schema of bench configs (for editors that check TOML files) and exit",
    )


def run(args: argparse.Namespace) -> int:
    """Validates the whole config (files and models included) before any work; ``--dry-run`` prints
    the plan and exits 2 when inputs are missing."""
    # here, not at the top: +4 s on `st-distill --help` (bench.runner loads torch and sentence-transformers; measured)
    from st_distill.bench.config import BenchConfig, load_config
    from st_distill.bench.downloads import describe_downloads
    from st_distill.bench.plan import check_plan, describe_plan, plan_cells, select_shard
    from st_distill.bench.runner import PhaseBlocked, run_bench

    if args.schema:
        print(json.dumps(BenchConfig.model_json_schema(), indent=2))
        return 0
    config = load_config(args.config, output_dir=args.output, check_files=not args.dry_run)
    if args.dry_run:
        cells = select_shard(plan_cells(config, args.phase), *args.shard)
        check_plan(config, cells)  # a real run checks it in Runner.run
        print(describe_plan(config, cells))
        print("\n".join(describe_downloads(config)))
        for missing in config.missing:
            print(f"  missing input: {missing}")
        if config.missing:
            print(f"st-distill bench: {len(config.missing)} input(s) missing; the run would stop at the first", file=sys.stderr)
            return 2
        return 0
    try:
        counts = run_bench(config, phase=args.phase, shard=args.shard, report=not args.no_report)
    except PhaseBlocked as exc:
        print(f"st-distill bench: {exc}")
        return 3
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun / accelerate launch, rank 0 speaks for the job
        return 0
    scope = "in the grid" if args.shard == (0, 1) and args.phase is None else f"in {_scope(args)}"
    skipped = f", {counts['skipped']} skipped (held by other runs)" if counts.get("skipped") else ""
    print(f"{counts['ran']} cell(s) run, {counts['done']} already done{skipped}, {counts['total']} {scope}; results in {config.output_dir}")
    if "report" in counts:
        print(f"\n{Path(counts['report']).read_text(encoding='utf-8')}")
    return 0


def _scope(args: argparse.Namespace) -> str:
    """``phase P``, ``shard I/N`` or ``shard I/N of phase P``."""
    shard = f"shard {args.shard[0]}/{args.shard[1]}" if args.shard != (0, 1) else ""
    phase = f"phase {args.phase}" if args.phase else ""
    return " of ".join(part for part in (shard, phase) if part)
