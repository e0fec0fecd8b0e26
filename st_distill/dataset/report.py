"""The report of a build: what it produced and what it left out."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from st_distill.io import write_json


@dataclass
class BuildReport:
    """What a build produced and what it left out.

    Attributes:
        objective: The registry objective the dataset is for.
        kind: Its format kind (``pointwise``, ``ntuple``, ``listwise``).
        columns: The dataset's columns, in order.
        queries: Distinct queries with at least one row.
        rows: Rows in the dataset.
        skipped: ``{reason: count}``: queries, rows, documents or input lines left out, e.g.
            ``"query without text"``, ``"fewer than 7 negatives"``, ``"missing teacher score"``,
            ``"unknown passage id"`` (input lines skipped with ``skip_invalid``).
        n_negatives: Negatives per row (ntuple), documents per list - 1 (listwise), per positive (pointwise).
        seed: The sampling seed.
        lazy: Whether texts are joined lazily (row numbers into text stores).
        ids: Whether the dataset holds string ids (``resolve_ids`` naming) instead of texts.
        sources: Where the data came from (kinds of inputs, file names).
        normalize: How teacher scores became targets (see :mod:`st_distill.data.normalize`);
            ``None`` when the objective trains on labels only.
        teacher: The teachers behind the scores when their table records them (scores from a teacher
            cache): ``{"ensemble", "teachers", "fingerprints"}``.
        seconds: Wall time of the build.
    """

    objective: str
    kind: str
    columns: list[str]
    queries: int = 0
    rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    n_negatives: int | None = None
    seed: int = 0
    lazy: bool = False
    ids: bool = False
    sources: dict[str, Any] = field(default_factory=dict)
    normalize: str | None = None
    teacher: dict[str, Any] | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the report as JSON, atomically."""
        write_json(path, self.to_dict())
