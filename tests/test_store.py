"""Tests of the text store's in-place index of clean TSV files, against a naive reader."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from st_distill.data import store as store_module
from st_distill.data.formats import FormatError
from st_distill.data.store import TextStore


def naive(text: str) -> dict[str, str]:
    """The reference: split every line at its tab."""
    return dict(line.split("\t") for line in text.splitlines())


def make_lines(count: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    words = ["alpha", "béta", "γάμμα", "delta", "日本語", "x"]
    return "".join(f"{i * 7}\t{' '.join(rng.choice(words, rng.integers(1, 9)))}\n" for i in range(count))


@pytest.mark.parametrize("block", [32, 4096])
def test_clean_tsv_is_indexed_in_place_and_matches_naive_reader(tmp_path, monkeypatch, block):
    # small blocks: the file is cut into many blocks, scanned on a thread pool
    monkeypatch.setattr(store_module, "_INDEX_BLOCK", block)
    text = make_lines(500)
    source = tmp_path / "collection.tsv"
    source.write_text(text, encoding="utf-8")
    store = TextStore.from_file(source, tmp_path / "corpus.arrow")
    expected = naive(text)
    assert store.source == source.resolve()
    assert store._table.schema.names == ["id", "start", "length"]  # ids and offsets, no texts
    assert store.ids.to_pylist() == list(expected)
    assert store.texts(np.arange(len(expected))[::-1]) == list(expected.values())[::-1]
    assert store["21"] == expected["21"] and "22" not in store
    assert store.rows(["7", "8", "3493"]).tolist() == [1, -1, 499]  # integer ids: the dense fast path
    assert pickle.loads(pickle.dumps(store)).texts([3]) == [expected["21"]]


def test_last_line_without_newline(tmp_path):
    source = tmp_path / "q.tsv"
    source.write_bytes("a\tfirst\nb\tsecond, no newline".encode())
    store = TextStore.from_file(source, tmp_path / "q.arrow")
    assert store.source is not None and dict(store.items()) == {"a": "first", "b": "second, no newline"}


@pytest.mark.parametrize(
    "text",
    [
        "a\tone\n\nb\ttwo\n",  # blank line
        "a\tone\r\nb\ttwo\r\n",  # Windows line endings
        "a\t one \nb\ttwo\n",  # surrounding spaces
        " a\tone\nb\ttwo\n",
        "a\tone\x07bell\nb\ttwo\n",  # a control character
    ],
)
def test_files_needing_cleaning_are_copied_as_the_line_reader_reads_them(tmp_path, text):
    source = tmp_path / "c.tsv"
    source.write_text(text, encoding="utf-8", newline="")
    store = TextStore.from_file(source, tmp_path / "c.arrow")
    assert store.source is None
    expected = {key.strip(): value.strip() for key, value in (line.split("\t") for line in text.splitlines() if line.strip())}
    assert dict(store.items()) == expected


@pytest.mark.parametrize(
    "data, message",
    [
        (b"a\tone\nb\ttwo\na\tthree\n", ":3: id 'a' appears twice"),
        (b"a\tone\nb\ttw\xffo\n", ":2: not valid UTF-8"),
        (b"a\tone\nb\ttwo\tthree\n", None),  # a tab inside a text: kept, as the line reader keeps it
    ],
)
def test_bad_clean_looking_files_name_the_line(tmp_path, data, message):
    source = tmp_path / "c.tsv"
    source.write_bytes(data)
    if message is None:
        assert TextStore.from_file(source, tmp_path / "c.arrow")["b"] == "two\tthree"
        return
    with pytest.raises(FormatError, match=message):
        TextStore.from_file(source, tmp_path / "c.arrow")
    assert not (tmp_path / "c.arrow").exists()


def test_an_index_refuses_a_changed_or_missing_source(tmp_path):
    source = tmp_path / "c.tsv"
    source.write_text("a\tone\nb\ttwo\n", encoding="utf-8")
    TextStore.from_file(source, tmp_path / "c.arrow")
    source.write_text("a\tONE\nb\ttwo\n", encoding="utf-8")
    os.utime(source, ns=(1, 1))
    with pytest.raises(FormatError, match="has changed since"):
        TextStore(tmp_path / "c.arrow")
    source.unlink()
    with pytest.raises(FormatError, match="no longer exists"):
        TextStore(tmp_path / "c.arrow")


def test_lazy_dataset_over_indexed_files_reads_the_texts(tmp_path):
    from st_distill.dataset import build_dataset, load_built_dataset, save_dataset

    corpus_text, queries_text = make_lines(50), "3\twhat is alpha\n5\twho is delta\n"
    (tmp_path / "c.tsv").write_text(corpus_text, encoding="utf-8")
    (tmp_path / "q.tsv").write_text(queries_text, encoding="utf-8")
    (tmp_path / "t.tsv").write_text("9.5\t1.25\t5\t14\t343\n2\t-3\t3\t0\t7\n", encoding="utf-8")
    queries = TextStore.from_file(tmp_path / "q.tsv", tmp_path / "q.arrow")
    corpus = TextStore.from_file(tmp_path / "c.tsv", tmp_path / "c.arrow")
    assert queries.source is not None and corpus.source is not None
    dataset, report = build_dataset("marginmse", queries, corpus, triples=tmp_path / "t.tsv", lazy=True)
    save_dataset(dataset, report, tmp_path / "built")
    docs, qs = naive(corpus_text), naive(queries_text)
    expected = [
        {"query": qs["5"], "positive": docs["14"], "negative_1": docs["343"], "scores": [9.5, 1.25]},
        {"query": qs["3"], "positive": docs["0"], "negative_1": docs["7"], "scores": [2.0, -3.0]},
    ]
    assert [dataset[i] for i in range(2)] == expected
    assert load_built_dataset(tmp_path / "built")[:2]["positive"] == [docs["14"], docs["0"]]
    assert report.queries == 2 and report.rows == 2
