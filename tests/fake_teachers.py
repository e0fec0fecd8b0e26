"""Model-free teachers for cache and builder tests (imported by test modules and their subprocesses)."""

from __future__ import annotations

import numpy as np

from st_distill.teachers import Teacher


class LengthTeacher(Teacher):
    """A deterministic teacher without a model: the score is a function of the two texts' lengths
    (plus ``i % 3`` for the i-th pair of a call when ``jitter``, to spread the scores)."""

    name = "length"
    jitter = False

    def info(self):
        return {"kind": "test", "model": self.name, "revision": None, "max_length": None, "activation": False, "similarity": None}

    def identity(self):
        return {"kind": self.name}

    def score(self, queries, documents):
        return np.array(
            [len(q) * 0.5 - len(d) * 0.25 + (i % 3 if self.jitter else 0) for i, (q, d) in enumerate(zip(queries, documents))],
            dtype=np.float32,
        )
