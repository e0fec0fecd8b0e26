"""Training a student with sentence-transformers' ``CrossEncoderTrainer``, resumable, from any script.

:func:`train_model` trains a ``CrossEncoder`` (e.g. made by :func:`st_distill.training.make_student`)
with a loss (e.g. a registry objective's, :meth:`st_distill.objectives.Objective.loss`) on a dataset in
that loss's format, checkpointing as it goes so that a killed run resumes from its last checkpoint.
bfloat16 comes from the trainer's own ``bf16`` argument, where the device computes it natively, with
the score layer kept in float32 (:func:`st_distill.training.forward.trainer_precision`); on CPU in
float32 each step's pairs are scored in token-length-sorted chunks (:func:`fast_forward`). The
trainer's per-step logs go through :mod:`logging` (:class:`StepLog`), and a non-finite loss stops
the run (:class:`StopOnNonFinite`).

Example:
    ::

        from st_distill.objectives import get_objective
        from st_distill.training import make_student, train_model

        student = make_student("sentence-transformers/all-MiniLM-L6-v2", seed=0, max_length=256, head="cosine")
        loss = get_objective("infonce").loss(student)
        summary = train_model(student, loss, dataset, {"max_steps": 1000, "learning_rate": 7e-6}, batch_rows=8)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
from transformers import PrinterCallback, ProgressCallback, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from st_distill.io import atomic_write
from st_distill.logs import progress_enabled
from st_distill.models.precision import native_bf16, score_head
from st_distill.training.dropout import cpu_dropout
from st_distill.training.forward import CPU_TRAIN_TOKENS_PER_CHUNK, fast_forward, trainer_precision

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoder
    from transformers import TrainerControl, TrainerState, TrainingArguments

logger = logging.getLogger(__name__)

__all__ = ["TRAIN_DEFAULTS", "StepLog", "StopOnNonFinite", "train_model", "rows_per_batch", "cell_train_loss"]

#: The training arguments :func:`train_model` reads, and their values where ``args`` leaves one out
#: (``max_steps`` has none). ``head_learning_rate`` is optional too: the score layer's own rate.
TRAIN_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-5,
    "warmup_steps": 0,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "bf16": False,
    "save_steps": 500,
    "logging_steps": 10,
    "optimizer": None,
}

#: Keys of a bench's training settings that are not the trainer's: the batch comes as ``batch_rows``.
_BENCH_KEYS = ("passages_per_batch",)

#: How :class:`StepLog` names the trainer's log keys.
_SHORT = {"learning_rate": "lr"}


class StepLog(TrainerCallback):
    """Logs each of the trainer's logging steps as one INFO line instead of printing its dict.

    ``step 10/60: loss 0.6087, grad_norm 33.1, lr 2.4e-05`` (4 significant digits; the parts of a
    combined loss under their names); the end of training as ``training done: train_loss 0.61, ...``.
    Only the main process logs.
    """

    def __init__(self, log: logging.Logger = logger) -> None:
        self.log = log

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: dict | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        values = ", ".join(f"{_SHORT.get(k, k)} {v:.4g}" if isinstance(v, float) else f"{_SHORT.get(k, k)} {v}"
                           for k, v in logs.items() if k not in ("epoch", "total_flos"))
        where = "training done" if "train_runtime" in logs else f"step {state.global_step}/{state.max_steps}"
        self.log.info("%s: %s", where, values)


class _BarOnly(ProgressCallback):
    """The library's progress bar without its printing of each log dict (:class:`StepLog` logs them)."""

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: dict | None = None, **kwargs: Any) -> None:
        return


class StopOnNonFinite(TrainerCallback):
    """Stops training with a ``FloatingPointError`` when a logged loss or gradient norm is NaN or infinite.

    The trainer otherwise logs a NaN step as the mean of the steps before it (``0.0`` when it is the
    first) and trains on with NaN weights. :func:`train_model` turns that filter off
    (``logging_nan_inf_filter=False``) so that this callback sees the value.
    """

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: dict | None = None, **kwargs: Any) -> None:
        bad = {k: v for k, v in (logs or {}).items() if k in ("loss", "grad_norm") and isinstance(v, float) and not math.isfinite(v)}
        if bad:
            raise FloatingPointError(
                f"training stopped at step {state.global_step}: {', '.join(f'{k} {v}' for k, v in bad.items())}; "
                "check the loss arguments (e.g. a temperature near 0) and the learning rate"
            )


def rows_per_batch(passages_per_batch: int, passages_per_row: int, world_size: int = 1) -> int:
    """Dataset rows per device batch that give about ``passages_per_batch`` passages in all devices' batch."""
    return max(1, passages_per_batch // (passages_per_row * world_size))


def _complete(checkpoint: Path) -> bool:
    """Whether a checkpoint can be resumed from: its ``trainer_state.json`` exists and every JSON file
    in it parses. The state is not always the last file written (a kill was seen to leave an empty
    ``tokenizer.json`` written after it), so a truncated file marks the checkpoint as incomplete."""
    if not (checkpoint / "trainer_state.json").is_file():
        return False
    for path in checkpoint.glob("*.json"):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
    return True


def _last_checkpoint(folder: Path) -> str | None:
    """The newest complete checkpoint (see :func:`_complete`), or ``None``.

    The newest is the trainer's own choice (``get_last_checkpoint``); one that is incomplete (a kill
    during its save) is removed, with a warning, and the one before it taken: left in place, the
    trainer's rotation (``save_total_limit=1``) would keep it as the newest and remove the complete
    checkpoints saved after resuming.
    """
    if not folder.is_dir():
        return None
    while (last := get_last_checkpoint(str(folder))) is not None and not _complete(Path(last)):
        logger.warning("removing the incomplete checkpoint %s (killed while it was saved)", last)
        with contextlib.suppress(FileNotFoundError):  # another rank of a DDP run removed it first
            shutil.rmtree(last)
    return last


def train_model(
    model: CrossEncoder,
    loss: Any,
    dataset: Dataset,
    args: dict[str, Any],
    seed: int = 0,
    batch_rows: int = 8,
    checkpoints: str | os.PathLike | None = None,
    log_path: str | os.PathLike | None = None,
    started_marker: str | os.PathLike | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    chunked: bool | int = True,
    fast_dropout: bool = True,
) -> dict[str, Any]:
    """Trains ``model`` with ``loss`` on ``dataset`` through ``CrossEncoderTrainer``, resumable.

    Checkpoints go to ``checkpoints`` every ``args["save_steps"]`` steps (only the last is kept);
    when one exists the run resumes from it (model, optimiser, scheduler, data position). The
    trainer's log history is written to ``log_path`` as JSON lines. With ``args["bf16"]`` the
    trainer runs with its ``bf16`` argument where the device computes bfloat16 natively, the score
    layer in float32 (float32 elsewhere, with a log line); on CPU in float32 each step's pairs are
    scored in length-sorted chunks unless ``chunked=False``. The tokens of a (query, document) pair
    are the model's ``max_seq_length``, set when the student is made or loaded.

    Args:
        model: The student.
        loss: The loss module built for ``model``.
        dataset: The training dataset in the loss's format.
        args: Training arguments: ``max_steps`` and any of :data:`TRAIN_DEFAULTS` (``learning_rate``,
            ``warmup_steps``, ``weight_decay``, ``max_grad_norm``, ``bf16``, ``save_steps``,
            ``logging_steps``, ``optimizer``); ``bf16`` asks for bfloat16 where the hardware computes it
            natively; an optional ``head_learning_rate`` is the score layer's own (a new layer on a
            pretrained body learns at a higher rate than the body should move). A bench's
            ``passages_per_batch`` may be there too. ``max_length`` is deprecated here (the model's
            ``max_seq_length`` is its home): it must then equal it.
        seed: Trainer seed (data order, dropout).
        batch_rows: Dataset rows per device batch.
        checkpoints: Checkpoint folder; default a temporary folder, removed afterwards (no resuming).
        log_path: Where the training log goes; default nowhere.
        started_marker: A file touched when training starts (progress and tests).
        callbacks: ``TrainerCallback`` objects added to the trainer (e.g. learning-curve evaluation).
        chunked: ``True``: on CPU in float32, score each step's pairs in chunks of
            :data:`CPU_TRAIN_TOKENS_PER_CHUNK` padded tokens (:func:`fast_forward`); an int: chunks of
            that many padded tokens on any device and precision; ``False``: each step's batch whole.
        fast_dropout: On CPU, draw dropout masks with :func:`~st_distill.training.cpu_dropout`
            (torch's distribution, another random stream); ``False`` keeps torch's own dropout.

    Under ``torchrun`` / ``accelerate launch`` every rank calls this with the same arguments and
    ``batch_rows`` rows per rank (see :func:`rows_per_batch`); the trainer runs DDP, each rank
    writes its own part of a checkpoint, and only rank 0 writes the log and the marker.

    Returns:
        ``{"steps", "seconds", "resumed_from", "train_loss", "processes"}`` (``processes``: the DDP world size).

    Raises:
        ValueError: On an unknown or missing key of ``args``, a ``max_length`` other than the model's,
            or a ``head_learning_rate`` for a model without a score layer; before any training.
        FloatingPointError: When a logged loss or gradient norm is not finite (:class:`StopOnNonFinite`).
    """
    args = _train_args(model, args)
    if checkpoints is None:
        with tempfile.TemporaryDirectory(prefix="st-distill-train-") as folder:
            return train_model(model, loss, dataset, args, seed, batch_rows, folder, log_path, started_marker, callbacks, chunked, fast_dropout)
    bf16 = bool(args["bf16"])
    head_lr = args.get("head_learning_rate")
    head = score_head(model) if head_lr is not None else None
    if head_lr is not None and head is None:
        raise ValueError("head_learning_rate: the model has no score layer (a Linear with num_labels outputs)")
    reduced = bf16 and native_bf16(model.device)
    if bf16 and not reduced:
        logger.info("bf16 asked for, but %s has no native bfloat16: training in float32", model.device)
    checkpoints = Path(checkpoints)
    resume = _last_checkpoint(checkpoints)
    training_args = CrossEncoderTrainingArguments(
        output_dir=str(checkpoints),
        max_steps=args["max_steps"],
        per_device_train_batch_size=batch_rows,
        learning_rate=args["learning_rate"],
        warmup_steps=args["warmup_steps"],
        weight_decay=args["weight_decay"],
        max_grad_norm=args["max_grad_norm"],
        **({"optim": args["optimizer"]} if args.get("optimizer") else {}),  # else the library's default (fused AdamW)
        **({"learning_rate_mapping": {rf"(^|\.){re.escape(head)}\.": head_lr}} if head else {}),
        bf16=reduced,  # the trainer's autocast; the score layer stays float32 (trainer_precision)
        seed=seed,
        data_seed=seed,
        save_strategy="steps",
        save_steps=args["save_steps"],
        save_total_limit=1,
        logging_steps=args["logging_steps"],
        logging_nan_inf_filter=False,  # a NaN loss is logged as NaN, and StopOnNonFinite stops the run
        report_to="none",
        disable_tqdm=not progress_enabled(logger),
        dataloader_drop_last=False,
        dataloader_pin_memory=model.device.type == "cuda",  # pinning needs an accelerator
        # a model on the CPU trains there; under torchrun this is also what makes the trainer run
        # DDP over gloo on CPUs (without it, it sees no accelerator and trains each rank alone)
        use_cpu=model.device.type == "cpu",
        # DDP must not search the forward output for unused parameters: a CrossEncoder returns a
        # BatchEncoding (a UserDict, which DDP does not look into), so the search finds none used,
        # marks every parameter ready at forward time and again in backward ("marked as ready
        # twice"); list losses also call the model once per mini-batch, which the search forbids.
        # Every parameter of a cross-encoder gets a gradient, so the search is not needed.
        ddp_find_unused_parameters=False,
    )
    trainer = CrossEncoderTrainer(model=model, args=training_args, train_dataset=dataset, loss=loss, callbacks=list(callbacks))
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    for callback in (StepLog(), StopOnNonFinite(), *((_BarOnly(),) if progress_enabled(logger) else ())):
        trainer.add_callback(callback)
    if started_marker is not None and trainer.is_world_process_zero():
        Path(started_marker).touch()
    if resume:
        logger.info("resuming from %s", resume)
    started = time.perf_counter()
    if chunked is True:  # chunks pay in float32 on CPU (fewer padded tokens), not under bfloat16 autocast (measured)
        tokens = CPU_TRAIN_TOKENS_PER_CHUNK if model.device.type == "cpu" and not reduced else None
    else:
        tokens = int(chunked) or None
    with (
        trainer_precision(model, reduced),
        fast_forward(model, bf16=False, tokens_per_chunk=tokens) if tokens else contextlib.nullcontext(),
        cpu_dropout(model) if fast_dropout and model.device.type == "cpu" else contextlib.nullcontext(),
    ):
        output = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    if log_path is not None and trainer.is_world_process_zero():
        with atomic_write(log_path) as f:
            for record in trainer.state.log_history:
                f.write(json.dumps(record, sort_keys=True) + "\n")
    return {
        "steps": int(trainer.state.global_step),
        "seconds": round(seconds, 1),
        "resumed_from": Path(resume).name if resume else None,
        "train_loss": cell_train_loss(trainer.state.log_history, output.training_loss, _checkpoint_step(resume), trainer.state.global_step),
        "processes": int(training_args.world_size),
    }


def _train_args(model: CrossEncoder, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with :data:`TRAIN_DEFAULTS` filled in; refuses unknown keys, a missing ``max_steps``
    and a ``max_length`` (deprecated here: the model's) other than the model's ``max_seq_length``."""
    known = {"max_steps", "head_learning_rate", *TRAIN_DEFAULTS, *_BENCH_KEYS}
    unknown = sorted(set(args) - known - {"max_length"})
    if unknown:
        raise ValueError(f"unknown training argument(s) {unknown}; known: {', '.join(sorted(known))}")
    if "max_steps" not in args:
        raise ValueError("max_steps: missing (the number of optimiser steps to train)")
    if "max_length" in args:
        if args["max_length"] != model.max_seq_length:
            raise ValueError(f"max_length: {args['max_length']} differs from the model's max_seq_length {model.max_seq_length} "
                             "(set it when the student is made: make_student(..., max_length=...))")
        warnings.warn("train_model: args['max_length'] is deprecated: the tokens of a pair are the model's max_seq_length "
                      "(make_student(..., max_length=...))", DeprecationWarning, stacklevel=3)
        args = {k: v for k, v in args.items() if k != "max_length"}
    return {**TRAIN_DEFAULTS, **args}


def _checkpoint_step(resume: str | None) -> int:
    """The step a ``checkpoint-N`` folder was saved at (0 without one)."""
    return int(Path(resume).name.rsplit("-", 1)[1]) if resume else 0


def cell_train_loss(log_history: list[dict], resumed_loss: float, resumed_step: int, total_steps: int) -> float:
    """The mean training loss over every step of a cell, also when it was resumed from a checkpoint.

    The trainer's own ``training_loss`` averages only the steps it ran itself (after ``resumed_step``);
    the steps before come from the losses logged before the checkpoint (each the mean over its
    logging window), restored with the trainer's state. A window cut by the checkpoint (a
    ``save_steps`` that is no multiple of ``logging_steps``) counts at the last logged mean.

    Args:
        log_history: The trainer's ``state.log_history`` (restored entries first).
        resumed_loss: The trainer's ``training_loss``: the mean over steps ``resumed_step + 1 ..``.
        resumed_step: The checkpoint's step; 0 when the cell was not resumed.
        total_steps: The cell's last step.
    """
    if resumed_step <= 0 or total_steps <= 0:
        return float(resumed_loss)
    before, previous, last = 0.0, 0, float(resumed_loss)
    for record in log_history:
        step = int(record.get("step", 0))
        if "loss" in record and previous < step <= resumed_step:
            last = float(record["loss"])
            before += last * (step - previous)
            previous = step
    before += last * (resumed_step - previous)
    return (before + float(resumed_loss) * (total_steps - resumed_step)) / total_steps
