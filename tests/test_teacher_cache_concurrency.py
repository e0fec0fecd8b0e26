"""Two writers on one teacher cache, and reading a complete cache without writing (reliability #20, items 5, 16)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fake_teachers import LengthTeacher

from st_distill.teachers import TeacherCache, load_cached_scores, score_with_teachers

REPO = Path(__file__).resolve().parents[1]

QUERIES = {f"q{i}": f"query number {i}" for i in range(4)}
CORPUS = {f"d{i}": f"document text {i} " + "x" * i for i in range(12)}


def expected(qid: str, docid: str) -> float:
    return np.float32(len(QUERIES[qid]) * 0.5 - len(CORPUS[docid]) * 0.25)


# Each writer scores its own pairs; before scoring a chunk it waits (up to a second) for the other
# writer to reach the same chunk, so that without a lock both write their k-th shard at once.
WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_teacher_cache_concurrency import CORPUS, QUERIES
    from fake_teachers import LengthTeacher
    from st_distill.teachers import score_with_teachers

    who, cache, barrier = sys.argv[1], sys.argv[2], Path(sys.argv[3])

    class Meeting(LengthTeacher):
        chunk = 0
        def score(self, queries, documents):
            (barrier / f"{{who}}-{{self.chunk}}").touch()
            deadline = time.time() + 1.0
            while len(list(barrier.glob(f"*-{{self.chunk}}"))) < 2 and time.time() < deadline:
                time.sleep(0.01)
            self.chunk += 1
            return super().score(queries, documents)

    docs = [d for i, d in enumerate(sorted(CORPUS)) if i % 2 == (who == "b")]
    pairs = [(q, d) for q in sorted(QUERIES) for d in docs]
    score_with_teachers([Meeting()], pairs, QUERIES, CORPUS, cache, shard_size=8)
    """
)


def test_two_writers_on_one_cache_leave_it_whole(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER.format(tests=str(Path(__file__).parent)))
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    procs = [
        subprocess.Popen([sys.executable, str(worker), who, str(cache), str(barrier)], env=env, stderr=subprocess.PIPE, text=True)
        for who in ("a", "b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    TeacherCache(cache).verify()  # every shard matches the manifest
    result = load_cached_scores(cache, queries=QUERIES, corpus=CORPUS)
    got = dict(zip(zip(result.pairs.column("qid").to_pylist(), result.pairs.column("docid").to_pylist()), result.scores.tolist()))
    assert sorted(got) == sorted((q, d) for q in QUERIES for d in CORPUS)  # both writers' pairs, none lost
    for (qid, docid), value in got.items():
        assert value == expected(qid, docid)
    # and a third run scores nothing: everything is cached
    again = score_with_teachers([LengthTeacher()], list(got), QUERIES, CORPUS, cache)
    assert again.scored == {"length": 0}


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_complete_cache_in_a_read_only_folder_is_read_and_scored_from(tmp_path):
    cache = tmp_path / "cache"
    pairs = [(q, d) for q in QUERIES for d in CORPUS]
    score_with_teachers([LengthTeacher()], pairs, QUERIES, CORPUS, cache, shard_size=16)
    before = {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()}
    modes = {}
    for path in [cache, *cache.rglob("*")]:
        modes[path] = path.stat().st_mode
        path.chmod(modes[path] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        read = load_cached_scores(cache, queries=QUERIES, corpus=CORPUS)
        assert read.pairs.num_rows == len(pairs)
        again = score_with_teachers([LengthTeacher()], pairs, QUERIES, CORPUS, cache, shard_size=16)
        assert again.scored == {"length": 0}
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    assert {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()} == before


def test_reading_a_complete_cache_does_not_rewrite_the_manifest(tmp_path):
    """Root-proof variant of the read-only test: the manifest keeps its inode and bytes."""
    cache = tmp_path / "cache"
    pairs = [(q, d) for q in QUERIES for d in CORPUS]
    score_with_teachers([LengthTeacher()], pairs, QUERIES, CORPUS, cache, shard_size=16)
    manifest = cache / "manifest.json"
    inode, data = manifest.stat().st_ino, manifest.read_bytes()
    load_cached_scores(cache, queries=QUERIES, corpus=CORPUS)
    score_with_teachers([LengthTeacher()], pairs, QUERIES, CORPUS, cache, shard_size=16)
    assert manifest.stat().st_ino == inode and manifest.read_bytes() == data
    assert json.loads(data)["teachers"]
