"""argparse types for sizes, counts and rates, shared by every sub-command.

Each checks its range where the value enters, so ``--depth -1`` stops at parsing with the
allowed range in the message (``argument --depth: expected an integer >= 1, got '-1'``)
instead of silently truncating a list later. Numbers are read as ASCII decimals: Python's
``int`` and ``float`` would also take ``1_000`` and non-ASCII digits.

Example:
    ::

        parser.add_argument("--depth", type=positive_int, default=100)
        parser.add_argument("--b", type=unit_interval, default=0.4)
"""

from __future__ import annotations

import argparse

from st_distill.data.formats import parse_int, parse_score


def _integer(text: str, minimum: int) -> int:
    value = parse_int(text.strip())
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
    return value


def _real(text: str, minimum: float, maximum: float | None = None) -> float:
    value = parse_score(text.strip())
    if value is None or value < minimum or (maximum is not None and value > maximum):
        allowed = f">= {minimum:g}" if maximum is None else f"in [{minimum:g}, {maximum:g}]"
        raise argparse.ArgumentTypeError(f"expected a number {allowed}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (sizes and counts: depth, top-k, batch size, max length, shard size)."""
    return _integer(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (e.g. a random seed)."""
    return _integer(text, 0)


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (e.g. BM25's k1)."""
    return _real(text, 0.0)


def unit_interval(text: str) -> float:
    """A number in [0, 1] (e.g. BM25's b)."""
    return _real(text, 0.0, 1.0)
