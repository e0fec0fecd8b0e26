"""Console output of the ``st-distill`` commands: quiet by default, complete with ``-v``.

- Log records go to stderr at INFO (DEBUG with ``-v``); third-party DEBUG lines (bm25s sets its
  own logger to DEBUG) appear only with ``-v``.
- transformers' model-loading report (the ``LOAD REPORT`` table of missing or unexpected
  weights) and sentence-transformers' "Converting SentenceTransformer model ..." notice appear
  once per model per process, not once per bench cell.
- Progress bars are drawn only on a terminal: written to a log file, their carriage returns
  and cursor escapes would become hundreds of lines. Long jobs log their size and an estimated
  time instead (see :func:`st_distill.models.scoring.score_pairs`).
"""

from __future__ import annotations

import logging
import re
import sys

__all__ = ["OncePerModel", "configure_logging", "progress_enabled"]

#: Libraries whose DEBUG and INFO chatter only ``-v`` shows.
NOISY_LOGGERS = ("bm25s", "urllib3", "filelock", "fsspec", "httpx", "httpcore", "datasets", "matplotlib", "PIL")

_REPEATED = (
    re.compile(r"LOAD REPORT\S*\s+from: (?P<model>\S+)"),
    re.compile(r"Converting SentenceTransformer model (?P<model>\S+) to CrossEncoder"),
)


class OncePerModel(logging.Filter):
    """Lets through the first model-loading report of each model and drops its repeats."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for kind, pattern in enumerate(_REPEATED):
            match = pattern.search(message)
            if match:
                key = (kind, match["model"])
                if key in self.seen:
                    return False
                self.seen.add(key)
        return True


def progress_enabled(logger: logging.Logger) -> bool:
    """Whether to draw a progress bar: stderr is a terminal and ``logger`` logs at INFO or below."""
    stream = sys.stderr
    return logger.isEnabledFor(logging.INFO) and stream is not None and stream.isatty()


def configure_logging(verbose: bool = False) -> None:
    """Sets up the console for a command: levels, the once-per-model filter, progress bars.

    Args:
        verbose: Log at DEBUG level, third-party libraries included.
    """
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    once = OncePerModel()
    handlers = list(logging.getLogger().handlers)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.get_logger("transformers")  # makes transformers install its own stderr handler
        handlers += hf_logging.get_logger().handlers
        if not verbose and not progress_enabled(logging.getLogger()):
            hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    for handler in handlers:
        handler.setLevel(level)
        handler.addFilter(once)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not progress_enabled(logging.getLogger()):
        try:
            import datasets

            datasets.disable_progress_bars()
        except ImportError:  # pragma: no cover - datasets is a dependency
            pass
