"""Training cross-encoder students, from the bench or from a plain sentence-transformers script.

- :mod:`~st_distill.training.students`: :func:`make_student` (a backbone as a one-label
  ``CrossEncoder`` with a ``"cls"``, ``"mean"`` or ``"cosine"`` head, its depth cut by
  :func:`truncate_layers`, its layers frozen by :func:`freeze_layers`), :func:`load_student`,
  :func:`save_student`, :func:`sample_pairs`.
- :mod:`~st_distill.training.forward`: :func:`fast_forward` (length-chunked forwards) and
  :func:`trainer_precision` (bfloat16 with a float32 score layer under the trainer's ``bf16``).
- :mod:`~st_distill.training.dropout`: :func:`cpu_dropout` (dropout masks drawn from 64-bit random
  words on CPU, where torch's ``bernoulli_`` makes them one of a step's largest costs).
- :mod:`~st_distill.training.trainer`: :func:`train_model` (``CrossEncoderTrainer``, resumable,
  logged through :mod:`logging`), :func:`rows_per_batch`.

The precision policy itself (where bfloat16 is native, which layer stays float32) is
:mod:`st_distill.models.precision`; the losses are :mod:`st_distill.losses`, built by name with
:func:`st_distill.objectives.get_objective`.
"""

from st_distill.training.dropout import cpu_dropout
from st_distill.training.forward import CPU_TRAIN_TOKENS_PER_CHUNK, fast_forward, trainer_precision
from st_distill.training.students import (
    HEADS,
    freeze_layers,
    load_student,
    make_student,
    sample_pairs,
    save_student,
    truncate_layers,
)
from st_distill.training.trainer import TRAIN_DEFAULTS, StepLog, StopOnNonFinite, cell_train_loss, rows_per_batch, train_model

__all__ = [
    "CPU_TRAIN_TOKENS_PER_CHUNK",
    "HEADS",
    "TRAIN_DEFAULTS",
    "StepLog",
    "StopOnNonFinite",
    "cell_train_loss",
    "cpu_dropout",
    "fast_forward",
    "freeze_layers",
    "load_student",
    "make_student",
    "rows_per_batch",
    "sample_pairs",
    "save_student",
    "train_model",
    "trainer_precision",
    "truncate_layers",
]
