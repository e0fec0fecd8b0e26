"""Training one model of the grid with sentence-transformers' ``CrossEncoderTrainer``.

:func:`make_student` loads a backbone as a one-label ``CrossEncoder`` (optionally keeping only its
first layers, for fast students); :func:`train_model` trains it on a built dataset with a registry
objective's loss, checkpointing as it goes so that a killed run resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from st_distill.io import atomic_write
from st_distill.logs import progress_enabled

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoder

logger = logging.getLogger(__name__)

__all__ = ["make_student", "train_model", "truncate_layers", "rows_per_batch"]


def truncate_layers(model: CrossEncoder, layers: int | Sequence[int]) -> None:
    """Keeps only some transformer layers of ``model`` (in place): the first ``layers`` (an int), or those at the given indices.

    Works for encoders whose layer list is ``encoder.layer`` (BERT, RoBERTa, ELECTRA, DeBERTa,
    MiniLM) or ``layers`` (ModernBERT/Ettin). The saved config records the new depth, so the
    truncated model reloads as it is.

    Which layers matter: in all-MiniLM-L6-v2 the [CLS] vector after the first two layers is the
    same for every input (its spread across inputs is 0.5% of its norm; 28-38% when the last
    layer is kept, e.g. ``[0, 5]``), and a cross-encoder head reads [CLS], so a student made of
    the first layers starts blind.

    Raises:
        ValueError: If the model has no recognisable layer list, or ``layers`` asks for layers it lacks.
    """
    from torch import nn

    base = model[0].auto_model.base_model
    owner, attribute = (base.encoder, "layer") if hasattr(getattr(base, "encoder", None), "layer") else (base, "layers")
    stack = getattr(owner, attribute, None)
    if not isinstance(stack, nn.ModuleList):
        raise ValueError(f"cannot truncate {type(base).__name__}: no encoder.layer or layers module list")
    keep = list(range(layers)) if isinstance(layers, int) else sorted(layers)
    if not keep or keep[-1] >= len(stack) or keep[0] < 0:
        raise ValueError(f"cannot keep layers {layers} of a {len(stack)}-layer model")
    setattr(owner, attribute, nn.ModuleList([stack[i] for i in keep]))
    config = model[0].auto_model.config
    config.num_hidden_layers = len(keep)
    if getattr(config, "layer_types", None):  # models with per-layer attention types (ModernBERT)
        config.layer_types = [config.layer_types[i] for i in keep]


def make_student(
    model: str, seed: int, layers: int | Sequence[int] | None = None, max_length: int | None = None, device: str | None = None
) -> CrossEncoder:
    """Loads a backbone as a fresh one-label ``CrossEncoder``, its new head initialised from ``seed``.

    Args:
        model: Path or hub id of the backbone.
        seed: Seeds torch/numpy/random before loading, so the classifier head is reproducible.
        layers: Keep only the first ``layers`` layers, or the layers at these indices (see :func:`truncate_layers`).
        max_length: Maximum sequence length of (query, document) pairs.
        device: Device; default as sentence-transformers decides.
    """
    from sentence_transformers.cross_encoder import CrossEncoder
    from transformers import set_seed

    set_seed(seed)
    student = CrossEncoder(model, num_labels=1, max_length=max_length, device=device)
    if layers is not None:
        truncate_layers(student, layers)
    return student


def rows_per_batch(passages_per_batch: int, passages_per_row: int, world_size: int = 1) -> int:
    """Dataset rows per device batch that give about ``passages_per_batch`` passages in all devices' batch."""
    return max(1, passages_per_batch // (passages_per_row * world_size))


def _last_checkpoint(folder: Path) -> str | None:
    """The newest complete checkpoint (one whose ``trainer_state.json``, written last, exists)."""
    complete = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()]
    return str(max(complete, key=lambda p: int(p.name.split("-")[-1]))) if complete else None


def train_model(
    model: CrossEncoder,
    loss: Any,
    dataset: Dataset,
    args: dict[str, Any],
    seed: int,
    batch_rows: int,
    checkpoints: str | os.PathLike,
    log_path: str | os.PathLike,
    started_marker: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Trains ``model`` with ``loss`` on ``dataset`` through ``CrossEncoderTrainer``, resumable.

    Checkpoints go to ``checkpoints`` every ``args["save_steps"]`` steps (only the last is kept);
    when one exists the run resumes from it (model, optimiser, scheduler, data position). The
    trainer's log history is written to ``log_path`` as JSON lines.

    Args:
        model: The student.
        loss: The loss module built for ``model``.
        dataset: The training dataset in the loss's format.
        args: Merged training arguments (``max_steps``, ``learning_rate``, ``warmup_steps``,
            ``weight_decay``, ``max_grad_norm``, ``bf16``, ``save_steps``, ``logging_steps``, ``optimizer``).
        seed: Trainer seed (data order, dropout).
        batch_rows: Dataset rows per device batch.
        checkpoints: Checkpoint folder.
        log_path: Where the training log goes.
        started_marker: A file touched when training starts (progress and tests).

    Under ``torchrun`` / ``accelerate launch`` every rank calls this with the same arguments and
    ``batch_rows`` rows per rank (see :func:`rows_per_batch`); the trainer runs DDP, each rank
    writes its own part of a checkpoint, and only rank 0 writes the log and the marker.

    Returns:
        ``{"steps", "seconds", "resumed_from", "train_loss", "processes"}`` (``processes``: the DDP world size).
    """
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

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
        optim=args.get("optimizer", "adamw_torch"),
        bf16=args["bf16"],
        seed=seed,
        data_seed=seed,
        save_strategy="steps",
        save_steps=args["save_steps"],
        save_total_limit=1,
        logging_steps=args["logging_steps"],
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
    trainer = CrossEncoderTrainer(model=model, args=training_args, train_dataset=dataset, loss=loss)
    if started_marker is not None and trainer.is_world_process_zero():
        Path(started_marker).touch()
    if resume:
        logger.info("resuming from %s", resume)
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    if trainer.is_world_process_zero():
        with atomic_write(log_path) as f:
            for record in trainer.state.log_history:
                f.write(json.dumps(record, sort_keys=True) + "\n")
    return {
        "steps": int(trainer.state.global_step),
        "seconds": round(seconds, 1),
        "resumed_from": Path(resume).name if resume else None,
        "train_loss": float(output.training_loss),
        "processes": int(training_args.world_size),
    }
