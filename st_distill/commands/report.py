"""``st-distill report``: rebuild the tables and charts of a bench results folder."""

from __future__ import annotations

import argparse

HELP = "write the comparison tables (Markdown, CSV, LaTeX), significance tests and charts of a bench results folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", help="the results folder of 'st-distill bench'")
    parser.add_argument("--phase", default=None, help="the phase to report (default: the last)")
    parser.add_argument(
        "--metrics", nargs="+", default=None,
        help="measures to show, among those evaluated (default: the config's report.metrics)",
    )


def run(args: argparse.Namespace) -> int:
    from st_distill.bench.report import write_report  # here: +5 s on `st-distill --help` (torch, via the bench; measured)

    written = write_report(args.results, phase=args.phase, metrics=args.metrics)
    print(written["markdown"].read_text(encoding="utf-8"))
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0
