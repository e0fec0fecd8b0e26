"""BEIR datasets by name: downloaded once into the cache, through BEIR's own download_and_unzip.

The network is never touched: ``beir.util.download_url`` (the only network call) is replaced by a
copy of a local zip archive built here; the rest (unzipping, moving into the cache) is the real code.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from st_distill.data.download import BEIR_URL, beir_cache_folder, cached_beir, fetch_beir

QUERIES = '{"_id": "q1", "text": "cheap flights"}\n{"_id": "q2", "text": "best pizza"}\n'
CORPUS = '{"_id": "a", "title": "", "text": "flight deals"}\n{"_id": "b", "title": "", "text": "pizza place"}\n'
QRELS = "query-id\tcorpus-id\tscore\nq1\ta\t1\nq2\tb\t1\n"


def beir_archive(folder: Path, name: str, with_corpus: bool = True) -> Path:
    """A zip laid out as the public BEIR archives: ``<name>/corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``."""
    path = folder / f"{name}.zip"
    with zipfile.ZipFile(path, "w") as archive:
        if with_corpus:
            archive.writestr(f"{name}/corpus.jsonl", CORPUS)
        archive.writestr(f"{name}/queries.jsonl", QUERIES)
        archive.writestr(f"{name}/qrels/test.tsv", QRELS)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ST_DISTILL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def server(tmp_path) -> Path:
    """The folder that the fake download serves ``<name>.zip`` archives from."""
    (tmp_path / "server").mkdir()
    return tmp_path / "server"


@pytest.fixture
def downloads(server, monkeypatch) -> list[str]:
    """Serves the archives of ``server`` in place of the network; records the URLs asked for."""
    import beir.util

    asked: list[str] = []

    def download_url(url: str, save_path: str, chunk_size: int = 1024) -> None:
        asked.append(url)
        source = server / url.rsplit("/", 1)[-1]
        if not source.is_file():
            raise ConnectionError(f"cannot reach {url}")
        shutil.copyfile(source, save_path)

    monkeypatch.setattr(beir.util, "download_url", download_url)
    return asked


def test_a_named_dataset_is_downloaded_once_into_the_cache(cache, server, downloads):
    from st_distill.data.formats import load_beir

    beir_archive(server, "scifact")
    assert cached_beir("scifact") is None
    folder = fetch_beir("scifact")
    assert folder == beir_cache_folder("scifact") == cache / "beir" / "scifact"
    assert downloads == [BEIR_URL.format(name="scifact")]
    assert BEIR_URL.format(name="scifact") == "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip"
    data = load_beir(folder, "test")
    assert data.queries == {"q1": "cheap flights", "q2": "best pizza"} and data.qrels == {"q1": {"a": 1}, "q2": {"b": 1}}
    assert sorted(p.name for p in (cache / "beir").iterdir()) == [".scifact.lock", "scifact"]  # no archive or temporary left
    assert fetch_beir("scifact") == folder and len(downloads) == 1  # cached: not downloaded again


def test_a_failed_download_names_the_dataset_and_leaves_nothing(cache, server, downloads):
    with pytest.raises(OSError, match=r"BEIR dataset 'nfcorpus' is not in the cache and could not be downloaded from "
                                      r"https://\S+/nfcorpus\.zip \(cannot reach .*\); unzip that archive into .*cache/beir by hand"):
        fetch_beir("nfcorpus")
    beir_archive(server, "fiqa", with_corpus=False)
    with pytest.raises(OSError, match="the archive has no corpus.jsonl"):
        fetch_beir("fiqa")
    assert [p.name for p in (cache / "beir").iterdir() if not p.name.endswith(".lock")] == []
    with pytest.raises(ValueError, match="unknown BEIR dataset 'scifcat'"):
        fetch_beir("scifcat")


def test_the_cache_root_follows_the_environment(monkeypatch, tmp_path):
    from st_distill.data.download import cache_root

    monkeypatch.delenv("ST_DISTILL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "st-distill"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "st-distill"


def test_a_bench_suite_naming_a_beir_dataset_loads_it_from_the_download(cache, server, downloads, tmp_path):
    """The config names `beir = "scifact"`; the sources phase fetches it and reads it like a folder."""
    from st_distill.bench.config import load_config
    from st_distill.bench.phases.sources import load_collection

    beir_archive(server, "scifact")
    (tmp_path / "run.trec").write_text("q1 Q0 a 1 2.0 x\nq1 Q0 b 2 1.0 x\nq2 Q0 b 1 2.0 x\n", encoding="utf-8")
    path = tmp_path / "bench.toml"
    path.write_text(
        '[[train_sources]]\nname = "sf"\nbeir = "scifact"\nsplit = "test"\nrun = "run.trec"\n'
        '[[backbones]]\nmodel = "."\n[[objectives]]\nname = "bce"\n'
        '[eval.suites.sf]\nbeir = "scifact"\nrun = "run.trec"\n',
        encoding="utf-8",
    )
    config = load_config(path)
    loaded = load_collection(config.eval.suites["sf"], tmp_path / "work", depth=10)
    assert loaded.queries == {"q1": "cheap flights", "q2": "best pizza"}
    assert loaded.run == {"q1": {"a": 2.0, "b": 1.0}, "q2": {"b": 2.0}}
    assert len(downloads) == 1 and load_config(path).eval.suites["sf"].beir_folder == cache / "beir" / "scifact"
