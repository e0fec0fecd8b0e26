"""Readers and writers of the field's file formats, validated line by line.

Ids are strings everywhere. A run is ``{qid: {docid: score}}`` and qrels are
``{qid: {docid: grade}}``, the dict-of-dicts shape that ir_measures and pytrec_eval
take directly. Texts are ``{id: text}``.

Every reader checks each line; a bad line raises :class:`FormatError`, whose message
names the file and the line (``path:line: what is wrong``). Readers that take
``skip_invalid=True`` instead skip bad lines and log one warning with the count and the
first offending line; pass a ``skipped`` :class:`collections.Counter` to receive the
counts by reason (the dataset builder puts them in its report).

What every line reader does the same way:

- a UTF-8 byte order mark at the start of the file is dropped; blank lines are skipped;
  a line ends at ``\n``, ``\r\n`` or a lone ``\r`` (as Python's text mode reads it); a line
  that is not UTF-8 is bad;
- numbers are read as trec_eval reads them, in ASCII: integers ``[+-]digits``, scores
  ``[+-]digits[.digits][e[+-]digits]``; Python-only spellings (``1_000``, non-ASCII digits,
  ``nan``, ``inf``) are bad, as is a score that overflows to infinity;
- fields of TREC files (runs, qrels, LLM rankings) are separated by ASCII spaces and tabs;
  a line holding another Unicode space (U+00A0, U+2028, ...) is bad, as Python's
  ``str.split`` and trec_eval would cut it differently;
- an empty id or an empty text (queries, documents) is bad, in TSV and BEIR files alike;
- qrels grades are integers within :data:`GRADE_LIMIT` of 0 (trec_eval's memory and time grow
  with the highest grade: 800 MB and 7 s for one query judged 10^8; beyond 2^63 it fails).

Ids written into a TREC run must be non-empty and hold no whitespace (:func:`write_trec_run`
refuses them rather than write a line that cannot be read back).

Supported formats:

- TREC run: ``qid Q0 docid rank score tag``, separated by spaces or tabs.
- TREC qrels: ``qid iter docid grade``; BEIR qrels: TSV with a ``query-id corpus-id score`` header.
- MS MARCO-style collections and queries: ``id<TAB>text`` TSV.
- BEIR folders: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``),
  ``qrels/<split>.tsv``. A document's text is ``title + " " + text``, stripped, as in BEIR's re-ranker.

Files ending in ``.gz`` are decompressed on the fly.

Where each lives: the line machinery in :mod:`st_distill.data.lines`, runs and qrels in
:mod:`st_distill.data.trec`, queries and documents in :mod:`st_distill.data.texts`; every name is
public here too. A loaded collection is a :class:`Collection`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from st_distill._deprecated import alias_names
from st_distill.data.lines import UTF8_BOM, BadLine, FormatError, LineChecker, numbered_lines, parse_int, parse_score, split_fields
from st_distill.data.texts import Texts, check_run_ids, line_of_id, read_jsonl, read_texts, read_tsv
from st_distill.data.trec import (
    GRADE_LIMIT,
    Qrels,
    Run,
    iter_trec_run,
    ranked,
    read_qrels,
    read_trec_run,
    run_id_problem,
    top_k,
    write_trec_run,
)

__all__ = [
    "GRADE_LIMIT", "UTF8_BOM", "BadLine", "Collection", "FormatError", "LineChecker", "Qrels", "Run", "Texts", "check_run_ids",
    "iter_trec_run", "line_of_id", "load_beir", "numbered_lines", "parse_int", "parse_score", "ranked", "read_jsonl", "read_qrels",
    "read_texts", "read_trec_run", "read_tsv", "run_id_problem", "split_fields", "top_k", "write_trec_run",
]


@dataclass(kw_only=True)
class Collection:
    """A collection in memory: ``queries`` and ``corpus`` as ``{id: text}`` (a dict or a
    :class:`~st_distill.data.store.TextStore`), ``qrels`` of one split, and its first-stage ``run``
    (``None`` when it has none). ``name`` and ``relevance_level`` (lowest relevant grade) label it."""

    queries: Texts
    corpus: Texts
    qrels: Qrels | None = None
    run: Run | None = None
    name: str = ""
    relevance_level: int = 1


#: ``BeirData``: the record load_beir returned before Collection (0.1)
__getattr__ = alias_names(__name__, "st_distill.data.formats", BeirData=Collection)


def load_beir(folder: str | os.PathLike, split: str = "test") -> Collection:
    """Loads a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).

    Args:
        folder: The dataset folder.
        split: The qrels split to load.

    Raises:
        FileNotFoundError: When a required file is missing.
        FormatError: On a malformed line in any of the files.
    """
    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise FileNotFoundError(f"{qrels_path}: no such file (splits here: {', '.join(available) or 'none'})")
    return Collection(
        corpus=read_jsonl(folder / "corpus.jsonl"),
        queries=read_jsonl(folder / "queries.jsonl"),
        qrels=read_qrels(qrels_path),
    )
