"""One call that exports a CrossEncoder: convert, write the folder, check parity, refuse a loss of accuracy.

Example:
    ::

        from st_distill.export import export_model

        report = export_model("runs/student", "runs/student-openvino")
        print(report["ndcg@10"]["ratio"], report["pairs_per_second"]["speedup"])
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from sentence_transformers.base.modules import Transformer
from sentence_transformers.util import fullname

from st_distill.export.convert import calibration_batches, convert
from st_distill.export.parity import DEFAULT_MIN_RATIO, ParityError, format_parity, measure_parity
from st_distill.export.suite import DEFAULT_CALIBRATION, DEFAULT_SUITE, calibration_pairs, load_suite
from st_distill.io import atomic_write, require_output_folder, write_json
from st_distill.models import cap_max_length, load_cross_encoder, resolve_model
from st_distill.models.exported import FORMATS, MANIFEST, RUNTIMES, ExportManifest, load_exported
from st_distill.teachers import model_fingerprint

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_FORMAT", "PARITY_FILE", "export_model", "write_export"]

#: The format measured best on this project's CPU (benchmarks/perf/export_throughput.py): the OpenVINO IR,
#: which OpenVINO runs in bfloat16 on CPUs with AMX; NNCF int8 was as fast there, further from the source's scores.
DEFAULT_FORMAT = "openvino"
#: The parity report's file in the exported folder.
PARITY_FILE = "parity.json"
_PACKAGES = ("st-distill", "torch", "transformers", "sentence-transformers", "openvino", "nncf", "onnxruntime", "onnx")


def _versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    runtime = RUNTIMES[fmt]
    if runtime is not None and importlib.util.find_spec(runtime) is None:
        raise ValueError(f"format {fmt!r} needs {runtime}: pip install 'st-distill[export]'")


def _card(source: Path | None, report: dict[str, Any], fmt: str) -> str:
    """The source's README.md card, with a section on this export and its parity table."""
    card = (source / "README.md").read_text(encoding="utf-8") if source is not None and (source / "README.md").is_file() else ""
    return (
        f"{card.rstrip()}\n\n## Exported ({fmt})\n\n"
        f"Exported by `st-distill export --format {fmt}`; load it with `st_distill.models.load_cross_encoder`.\n"
        f"Parity with the source (`{PARITY_FILE}`):\n\n```\n{format_parity(report)}\n```\n"
    ).lstrip()


def write_export(model: Any, output: Path, fmt: str, pairs: list[tuple[str, str]], source: str | None = None) -> None:
    """Writes an exported folder without checking parity: the graph (calibrated on ``pairs``), the
    source's tokenizer and config, and ``export.json``. :func:`export_model` is the checked call.

    Args:
        model: The source CrossEncoder (first module a ``Transformer``).
        output: The folder (created).
        fmt: One of :data:`st_distill.models.exported.FORMATS`.
        pairs: Calibration pairs.
        source: The source's name or path, recorded in ``export.json``.
    """
    _check_format(fmt)
    first = model[0]
    model.eval()
    output.mkdir(parents=True, exist_ok=True)
    inputs, batches = calibration_batches(model, pairs)
    convert(fmt, model, output, inputs, batches)
    first.tokenizer.save_pretrained(str(output))
    first.config.save_pretrained(str(output))
    manifest = ExportManifest(
        format=fmt, inputs=inputs, num_labels=model.num_labels, max_seq_length=model.max_seq_length,
        do_lower_case=first.do_lower_case, processing_kwargs=dict(first.processing_kwargs),
        activation_fn=fullname(model.activation_fn) if model.activation_fn is not None else None,
        source=source or str(getattr(first.config, "name_or_path", "")),
        source_fingerprint=model_fingerprint(model), library=_versions(),
    )
    write_json(output / MANIFEST, manifest.model_dump(mode="json"))


def export_model(
    model: str | os.PathLike | Any,
    output: str | os.PathLike,
    fmt: str = DEFAULT_FORMAT,
    *,
    calibration: str | os.PathLike = DEFAULT_CALIBRATION,
    calibration_count: int = 256,
    suite: str | os.PathLike = DEFAULT_SUITE,
    depth: int = 100,
    rel_level: int = 2,
    min_ratio: float = DEFAULT_MIN_RATIO,
    max_length: int | None = None,
    repeats: int = 3,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Exports a CrossEncoder to ``output`` in format ``fmt`` and writes its parity report there.

    The folder gets the source's tokenizer and config, the graph, ``export.json``, ``parity.json``
    and ``README.md`` (the source's card with the parity table added).

    Args:
        model: The source: a CrossEncoder, or a spec :func:`st_distill.models.resolve_model` takes.
        output: The exported folder (created; it must be empty or absent unless ``overwrite``).
        fmt: One of :data:`st_distill.models.exported.FORMATS`.
        calibration: Suite folder whose run candidates calibrate static quantisation.
        calibration_count: Calibration pairs drawn from it.
        suite: Suite folder (with qrels) of the parity report.
        depth: Candidates per query re-ranked in the parity report.
        rel_level: Minimum grade counted relevant in the suite's judgements.
        min_ratio: The share of the source's nDCG@10 the export must keep, in (0, 1].
        max_length: Maximum tokens per pair of the source (and so of the export); default the source's.
        repeats: Timed passes of each model for pairs per second.
        overwrite: Replace an existing non-empty ``output``.

    Returns:
        The parity report (:func:`st_distill.export.parity.measure_parity`) with ``format``,
        ``min_ratio`` and ``passed``.

    Raises:
        ValueError: On an unknown format or a missing runtime, bad settings, a non-empty output
            folder, a source that is already exported or whose first module is no ``Transformer``.
        ParityError: When the export keeps less than ``min_ratio`` of the source's nDCG@10 (the
            folder and its ``parity.json`` are written first, with ``"passed": false``).
    """
    _check_format(fmt)
    if not 0 < min_ratio <= 1:
        raise ValueError(f"min_ratio must be in (0, 1], got {min_ratio}")
    for name, value in (("depth", depth), ("repeats", repeats), ("calibration_count", calibration_count)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    output = require_output_folder(output)
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise ValueError(f"{output}: the output folder is not empty (pass overwrite=True / --overwrite)")
    parity_suite = load_suite(suite, need_qrels=True)
    pairs = calibration_pairs(load_suite(calibration), calibration_count)
    source_folder = None
    if isinstance(model, (str, os.PathLike)):
        spec = str(model)
        model = load_cross_encoder(resolve_model(spec), device="cpu", max_length=max_length)
        source_folder = Path(resolve_model(spec))
    elif max_length is not None:
        model.max_seq_length = cap_max_length(model, max_length)
    if type(model[0]) is not Transformer:
        raise ValueError(f"{source_folder or 'the model'}: only CrossEncoders whose first module is a Transformer export (got {type(model[0]).__name__})")

    if output.exists() and overwrite:
        shutil.rmtree(output)
    write_export(model, output, fmt, pairs, source=str(source_folder) if source_folder else None)

    exported = load_exported(output)
    report = measure_parity(model, exported, parity_suite, depth=depth, rel_level=rel_level, repeats=repeats)
    report.update(format=fmt, min_ratio=min_ratio, passed=report["ndcg@10"]["ratio"] >= min_ratio)
    write_json(output / PARITY_FILE, report)
    with atomic_write(output / "README.md") as f:
        f.write(_card(source_folder, report, fmt))
    if not report["passed"]:
        ndcg = report["ndcg@10"]
        raise ParityError(
            f"{output}: the {fmt} export keeps {100 * ndcg['ratio']:.2f}% of the source's nDCG@10 "
            f"({ndcg['exported']:.4f} against {ndcg['source']:.4f}), below the required {100 * min_ratio:.2f}%; "
            f"see {output / PARITY_FILE}",
            report,
        )
    return report
