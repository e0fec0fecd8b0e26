"""Public BEIR datasets by name: downloaded once (when the network allows) into a local cache.

A bench config may give ``beir = "scifact"`` instead of a folder; the run then reads the cached
copy, downloading it first with BEIR's own ``beir.util.download_and_unzip`` from the public BEIR
archive (``BEIR_URL``). The cache folder is ``$ST_DISTILL_CACHE/beir/<name>`` (default
``~/.cache/st-distill``, or ``$XDG_CACHE_HOME/st-distill``). A download is unpacked into a
temporary folder and renamed into place once complete, under a file lock, so parallel shards of
one grid download a dataset once and a failed download leaves nothing behind.

Example:
    ::

        from st_distill.data.download import fetch_beir
        from st_distill.data.formats import load_beir

        data = load_beir(fetch_beir("scifact"), split="test")
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from st_distill.io import file_lock

__all__ = ["BEIR_DATASETS", "BEIR_URL", "beir_cache_folder", "cache_root", "cached_beir", "fetch_beir"]

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"

#: The public BEIR datasets that unpack into one BEIR folder, with their qrels splits.
BEIR_DATASETS: dict[str, tuple[str, ...]] = {
    "msmarco": ("train", "dev", "test"),
    "trec-covid": ("test",),
    "nfcorpus": ("train", "dev", "test"),
    "nq": ("test",),
    "hotpotqa": ("train", "dev", "test"),
    "fiqa": ("train", "dev", "test"),
    "arguana": ("test",),
    "webis-touche2020": ("test",),
    "quora": ("dev", "test"),
    "dbpedia-entity": ("dev", "test"),
    "scidocs": ("test",),
    "fever": ("train", "dev", "test"),
    "climate-fever": ("test",),
    "scifact": ("train", "test"),
}
_FILES = ("corpus.jsonl", "queries.jsonl", "qrels")


def cache_root() -> Path:
    """``$ST_DISTILL_CACHE``, else ``$XDG_CACHE_HOME/st-distill``, else ``~/.cache/st-distill``."""
    if os.environ.get("ST_DISTILL_CACHE"):
        return Path(os.environ["ST_DISTILL_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "st-distill"


def beir_cache_folder(name: str) -> Path:
    """Where the BEIR dataset ``name`` is (or will be) cached."""
    return cache_root() / "beir" / name


def cached_beir(name: str) -> Path | None:
    """The cached folder of the BEIR dataset ``name``, or ``None`` when it is not downloaded yet."""
    folder = beir_cache_folder(name)
    return folder if all((folder / f).exists() for f in _FILES) else None


def fetch_beir(name: str) -> Path:
    """The folder of the public BEIR dataset ``name``, downloaded into the cache if not there yet.

    Args:
        name: A key of :data:`BEIR_DATASETS`, e.g. ``"scifact"``.

    Returns:
        The cached BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).

    Raises:
        ValueError: For an unknown name.
        OSError: When the download fails (no network, or not a BEIR archive); the message names the
            dataset, the URL and the cache folder to fill by hand.
    """
    if name not in BEIR_DATASETS:
        raise ValueError(f"unknown BEIR dataset {name!r} (known: {', '.join(BEIR_DATASETS)})")
    folder = beir_cache_folder(name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(folder.parent / f".{name}.lock"):
        if cached_beir(name) is not None:
            return folder
        url = BEIR_URL.format(name=name)
        tmp = folder.parent / f".{name}.download"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            from beir import util

            unpacked = Path(util.download_and_unzip(url, str(tmp)))
            absent = [f for f in _FILES if not (unpacked / f).exists()]
            if absent:
                raise OSError(f"the archive has no {', '.join(absent)}")
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(unpacked, folder)
        except Exception as exc:
            raise OSError(
                f"BEIR dataset {name!r} is not in the cache and could not be downloaded from {url} ({exc}); "
                f"unzip that archive into {folder.parent} by hand, or give a local folder as 'beir'"
            ) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
