"""The dataset package and the deprecated alias at its old path."""

from __future__ import annotations

import importlib
import sys

import pytest

import st_distill.dataset as dataset


def test_old_builder_path_is_a_deprecated_alias(monkeypatch):
    monkeypatch.delitem(sys.modules, "st_distill.data.builder", raising=False)
    with pytest.warns(DeprecationWarning, match="st_distill.data.builder moved to st_distill.dataset"):
        old = importlib.import_module("st_distill.data.builder")
    for name in dataset.__all__:
        assert getattr(old, name) is getattr(dataset, name)


def test_the_builder_does_not_import_teachers_nor_higher_layers():
    for module in ("build", "rows", "targets", "triples", "persist", "report"):
        source = importlib.import_module(f"st_distill.dataset.{module}").__file__
        text = open(source, encoding="utf-8").read()
        for higher in ("st_distill.teachers", "st_distill.training", "st_distill.evaluation", "st_distill.bench", "st_distill.commands"):
            assert f"import {higher}" not in text and f"from {higher}" not in text, (module, higher)


def test_old_retrieve_path_is_a_deprecated_alias(monkeypatch):
    import st_distill.data.first_stage as first_stage

    monkeypatch.delitem(sys.modules, "st_distill.evaluation.retrieve", raising=False)
    with pytest.warns(DeprecationWarning, match="st_distill.data.first_stage"):
        old = importlib.import_module("st_distill.evaluation.retrieve")
    assert old.bm25_retrieve is first_stage.bm25_retrieve and old.dense_retrieve is first_stage.dense_retrieve
