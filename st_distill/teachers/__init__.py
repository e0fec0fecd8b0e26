"""Teacher scoring of (query, document) pairs, with a content-keyed, verified on-disk cache and ensembles.

Teachers:

- :class:`CrossEncoderTeacher`: a sentence-transformers ``CrossEncoder``; scores are **raw
  logits** (no activation), scored by :func:`st_distill.models.scoring.score_pairs`. A causal-LM
  reranker loaded as a ``CrossEncoder`` (a ``LogitScore`` module after the language model)
  works the same way: its raw score is the log-odds ``logit("yes") - logit("no")``.
- :class:`BiEncoderTeacher`: a ``SentenceTransformer``; the score is the cosine or dot
  similarity of the query and document embeddings.

The cache (:class:`TeacherCache`) is keyed by what determines a score, never by a name or a path:

- a **teacher** is its fingerprint (:meth:`Teacher.fingerprint`): a hash of its weights'
  bytes, its tokenizer, its module and model configuration, plus max length and
  activation/similarity. New weights saved where a cached model was get new scores; the same
  model reached by another path is served from the cache. The fingerprint of a loaded model is
  computed once (a few hundred MB/s of weights) and reused while its tensors are unchanged;
- a **pair** is ``(qid, docid)`` plus a 64-bit hash (xxh3) of the query's and of the
  document's text: a pair whose text changed is scored again.

It is a folder::

    manifest.json                   teachers by fingerprint (name, model id, revision, max length,
                                    activation/similarity, component hashes), shards with row counts
                                    and SHA-256, the last run's ensemble recipe and normalisation
    <name>-<fingerprint[:16]>/shard-00000.parquet   (qid, docid, query_hash, doc_hash, score) rows

Every shard is checked against its SHA-256 when read; a shard that changed after it was written,
or is missing, stops the run with an error naming it (``repair=True`` moves it aside and scores
its pairs again). A shard is written atomically as soon as its chunk is scored, then the manifest,
so a run killed at any point loses at most the chunk in flight; the next run with the same cache
scores only the pairs that are missing. Several teachers combine into one score per pair by
``"mean"`` (of raw scores) or ``"zscore"`` (mean of per-teacher standardised scores); the recipe,
with each teacher's mean and standard deviation, is written to the manifest. Scores stay raw: a
normalisation (:mod:`st_distill.data.normalize`) is recorded and applied by the builder.

The package: :mod:`~st_distill.teachers.models` (the teachers and their fingerprints),
:mod:`~st_distill.teachers.cache` (the cache folder, its manifest and lock) and
:mod:`~st_distill.teachers.scoring` (scoring through the cache, ensembles); every public name is
importable from ``st_distill.teachers``. A run writing to a cache holds its lock (``.lock``),
so two runs on one cache never corrupt it: the second waits, then reuses the first one's scores.

Example:
    ::

        from st_distill.teachers import CrossEncoderTeacher, score_with_teachers

        teacher = CrossEncoderTeacher("cross-encoder/ms-marco-MiniLM-L12-v2")
        result = score_with_teachers([teacher], pairs, queries, corpus, cache_dir="cache/teachers")
        result.to_run()          # {qid: {docid: raw logit}}
"""

from st_distill.teachers.cache import (
    CACHE_FORMAT,
    CACHE_VERSION,
    KEY_SCHEMA,
    KEYS,
    MANIFEST,
    PAIR_SCHEMA,
    SCORE_SCHEMA,
    Manifest,
    ShardRecord,
    TeacherCache,
    TeacherRecord,
)
from st_distill.teachers.models import (
    _FINGERPRINTS,
    BiEncoderTeacher,
    CrossEncoderTeacher,
    Teacher,
    model_fingerprint,
)
from st_distill.teachers.scoring import (
    ENSEMBLES,
    TeacherScores,
    _keyed,
    combine,
    load_cached_scores,
    score_with_teachers,
    unique_pairs,
)

__all__ = [
    "BiEncoderTeacher",
    "CACHE_FORMAT",
    "CACHE_VERSION",
    "CrossEncoderTeacher",
    "ENSEMBLES",
    "KEYS",
    "KEY_SCHEMA",
    "MANIFEST",
    "Manifest",
    "PAIR_SCHEMA",
    "SCORE_SCHEMA",
    "ShardRecord",
    "Teacher",
    "TeacherCache",
    "TeacherRecord",
    "TeacherScores",
    "combine",
    "load_cached_scores",
    "model_fingerprint",
    "score_with_teachers",
    "unique_pairs",
]
