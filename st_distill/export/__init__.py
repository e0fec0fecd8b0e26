"""Ship a student: export a CrossEncoder to a quantised CPU format, with a parity report and a model card.

- :func:`export_model` (:mod:`.core`): convert, write the exported folder, measure parity, refuse an
  export that keeps less than a share of the source's nDCG@10 (:class:`ParityError`).
- :mod:`.convert`: one converter per format (OpenVINO + NNCF, ONNX Runtime, torch dynamic int8).
- :mod:`.suite`: the calibration and parity pairs (a run, its queries, corpus and qrels).
- :mod:`.parity`: the parity report.
- :mod:`.card`: a student's model card from a dict of facts.

An exported folder loads with :func:`st_distill.models.load_cross_encoder` (see
:mod:`st_distill.models.exported`).
"""

from st_distill.export.core import DEFAULT_FORMAT, PARITY_FILE, export_model
from st_distill.export.parity import DEFAULT_MIN_RATIO, ParityError, format_parity, measure_parity
from st_distill.export.suite import DEFAULT_CALIBRATION, DEFAULT_SUITE, Suite, calibration_pairs, load_suite

__all__ = [
    "DEFAULT_CALIBRATION",
    "DEFAULT_FORMAT",
    "DEFAULT_MIN_RATIO",
    "DEFAULT_SUITE",
    "PARITY_FILE",
    "ParityError",
    "Suite",
    "calibration_pairs",
    "export_model",
    "format_parity",
    "load_suite",
    "measure_parity",
]
