"""The share of the gap: how far a re-ranker goes from the first stage towards its teacher.

``share = (row - first stage) / (teacher - first stage)``: 0 at the first stage, 1 at the teacher,
below 0 for a re-ranking worse than its input. It is undefined without both reference rows, and
where the teacher is not above the first stage (no gap to close).
"""

from __future__ import annotations

__all__ = ["gap_note", "share_of_gap"]


def share_of_gap(value: float, first_stage: float | None, teacher: float | None) -> float | None:
    """``(value - first_stage) / (teacher - first_stage)``; ``None`` where :func:`gap_note` gives a reason."""
    if gap_note(first_stage, teacher) is not None:
        return None
    return (value - first_stage) / (teacher - first_stage)


def gap_note(first_stage: float | None, teacher: float | None) -> str | None:
    """Why the share is undefined on a suite (``None`` where it is defined).

    Args:
        first_stage: The first stage's value of the measure on the suite (``None``: no such row).
        teacher: The teacher's value (``None``: no teacher row, as for a teacher given as a scores file).
    """
    if first_stage is None:
        return "no first-stage row"
    if teacher is None:
        return "no teacher row (the teacher cannot score new pairs: a scores file, LLM rankings or none)"
    if teacher <= first_stage:
        return f"the teacher ({teacher:.4f}) is not above the first stage ({first_stage:.4f}): no gap to share"
    return None
