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


@pytest.mark.parametrize(
    "module, old", [("st_distill.data.formats", "BeirData"), ("st_distill.data.sources", "IRDataset"), ("st_distill.bench.phases.sources", "Loaded")]
)
def test_the_three_collection_records_are_one_type(module, old):
    from st_distill.data.formats import Collection

    with pytest.warns(DeprecationWarning, match=f"{old} is now st_distill.data.formats.Collection"):
        assert getattr(importlib.import_module(module), old) is Collection


def test_load_beir_gives_a_collection(shared_data):
    from st_distill.data.formats import Collection, load_beir

    beir = load_beir(shared_data / "scifact", "test")
    assert isinstance(beir, Collection) and beir.run is None and beir.relevance_level == 1
    assert len(beir.queries) == 1109 and sum(len(d) for d in beir.qrels.values()) == 339


def test_build_from_sources_is_build_dataset_with_the_collection_and_its_run_negatives():
    from st_distill.data.formats import Collection
    from st_distill.data.negatives import negatives_from_run

    queries = {"q1": "cats", "q2": "dogs"}
    corpus = {f"d{i}": f"document {i}" for i in range(8)}
    qrels = {"q1": {"d0": 2, "d1": 1}, "q2": {"d4": 2}}
    run = {"q1": {f"d{i}": 8.0 - i for i in range(8)}, "q2": {f"d{i}": float(i) for i in range(8)}}
    collection = Collection(queries=queries, corpus=corpus, qrels=qrels, relevance_level=2)
    got, report = dataset.build_from_sources("infonce", collection, negatives_run=run, negatives_per_query=4, depth=6,
                                             strategy="uniform", negatives_per_row=3, seed=5)
    pools = negatives_from_run(run, qrels, k=4, depth=6, strategy="uniform", relevance_threshold=2, seed=5)
    expected, _ = dataset.build_dataset("infonce", queries, corpus, qrels=qrels, negatives=pools, relevance_threshold=2,
                                        negatives_per_row=3, seed=5)
    assert got.data.table.equals(expected.data.table)
    assert report.rows == 2  # one positive per query at grade >= 2 (d1, grade 1, is not relevant)
