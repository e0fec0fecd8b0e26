"""Training datasets of the registry objectives: built from queries, texts, judgements, negatives and
teacher scores (:func:`build_dataset`), saved and memory-mapped back (:func:`save_dataset`,
:func:`load_built_dataset`).

Modules: :mod:`~st_distill.dataset.build` (the entry point), :mod:`~st_distill.dataset.rows`
(rows from in-memory sources), :mod:`~st_distill.dataset.triples` (the Arrow path of teacher
triples), :mod:`~st_distill.dataset.targets` (teacher scores to labels, checked),
:mod:`~st_distill.dataset.persist` (files, lazy text join), :mod:`~st_distill.dataset.report`.
"""

from st_distill.dataset.build import SIZE_NAMES, build_dataset, resolve_negatives, size_argument, size_name
from st_distill.dataset.persist import DATASET_FILE, LAZY_FILE, REPORT_FILE, LazyTexts, load_built_dataset, load_report, save_dataset
from st_distill.dataset.report import BuildReport
from st_distill.dataset.sources import build_from_sources
from st_distill.dataset.targets import SOFTMAX_SPREAD

__all__ = [
    "BuildReport",
    "DATASET_FILE",
    "LAZY_FILE",
    "LazyTexts",
    "REPORT_FILE",
    "SIZE_NAMES",
    "SOFTMAX_SPREAD",
    "build_dataset",
    "build_from_sources",
    "load_built_dataset",
    "load_report",
    "resolve_negatives",
    "save_dataset",
    "size_argument",
    "size_name",
]
