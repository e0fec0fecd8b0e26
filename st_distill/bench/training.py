"""Training one model of the grid with sentence-transformers' ``CrossEncoderTrainer``.

:func:`make_student` loads a backbone as a one-label ``CrossEncoder`` (a classifier on [CLS], or mean
pooling and a dense layer; optionally keeping only some layers, and training only some);
:func:`train_model` trains it on a built dataset with a registry objective's loss, checkpointing as
it goes so that a killed run resumes from its last checkpoint. Training steps run through
:func:`fast_forward`: bfloat16 autocast where the device computes it natively, and on CPU in float32
each step's pairs scored in token-length-sorted chunks (benchmarks/perf/train_throughput.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from st_distill.io import atomic_write
from st_distill.logs import progress_enabled

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoder
    from transformers import TrainerCallback

logger = logging.getLogger(__name__)

__all__ = ["HEADS", "make_student", "load_student", "sample_pairs", "train_model", "truncate_layers", "freeze_layers",
           "fast_forward", "rows_per_batch"]

#: Score heads :func:`make_student` builds: the library's classifier on the [CLS] vector; mean
#: pooling of the token embeddings and a dense layer to one score; the cosine of the two segments'
#: mean embeddings (:class:`st_distill.models.heads.SegmentCosine`) and a dense layer.
HEADS = ("cls", "mean", "cosine")

#: On CPU in float32, a training step scores its pairs in length-sorted chunks of at most this many
#: padded tokens (rows x longest row). benchmarks/perf/train_throughput.py measured it on MiniLM-L6,
#: 16 TREC DL pairs a step: 1.14x the pairs per CPU-second in float32, nothing more under bfloat16
#: autocast (bf16 alone 1.74x, bf16 with chunks 1.61-1.63x), so bfloat16 steps are not chunked.
CPU_TRAIN_TOKENS_PER_CHUNK = 1024


def _layer_stack(model: CrossEncoder) -> tuple[Any, str, Any]:
    """``(owner, attribute, module list)`` of the transformer layers of ``model``'s backbone.

    Raises:
        ValueError: If the backbone has no ``encoder.layer`` or ``layers`` module list.
    """
    from torch import nn

    base = model[0].auto_model.base_model
    owner, attribute = (base.encoder, "layer") if hasattr(getattr(base, "encoder", None), "layer") else (base, "layers")
    stack = getattr(owner, attribute, None)
    if not isinstance(stack, nn.ModuleList):
        raise ValueError(f"cannot select layers of {type(base).__name__}: no encoder.layer or layers module list")
    return owner, attribute, stack


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

    owner, attribute, stack = _layer_stack(model)
    keep = list(range(layers)) if isinstance(layers, int) else sorted(layers)
    if not keep or keep[-1] >= len(stack) or keep[0] < 0:
        raise ValueError(f"cannot keep layers {layers} of a {len(stack)}-layer model")
    setattr(owner, attribute, nn.ModuleList([stack[i] for i in keep]))
    config = model[0].auto_model.config
    config.num_hidden_layers = len(keep)
    if getattr(config, "layer_types", None):  # models with per-layer attention types (ModernBERT)
        config.layer_types = [config.layer_types[i] for i in keep]


def freeze_layers(model: CrossEncoder, train_layers: Sequence[int]) -> None:
    """Leaves only the given transformer layers (positions in ``model``'s layer list; none: the head alone) and the score head trainable.

    The embeddings and every other layer get ``requires_grad = False`` (the trainer's optimiser skips
    them, and the backward pass stops at the lowest trainable layer); everything after the layer
    stack (the [CLS] pooler and classifier, or the pooling and dense head) keeps training.

    Raises:
        ValueError: If a position is outside the layer list.
    """
    owner, attribute, stack = _layer_stack(model)
    wanted = set(train_layers)
    if wanted and (min(wanted) < 0 or max(wanted) >= len(stack)):
        raise ValueError(f"cannot train layers {sorted(wanted)} of a {len(stack)}-layer model")
    backbone = model[0].auto_model.base_model
    frozen = {id(p) for p in backbone.parameters()}
    for position in wanted:
        frozen -= {id(p) for p in stack[position].parameters()}
    head = [name for name, module in backbone.named_children() if name == "pooler"]  # BERT's [CLS] pooler feeds the classifier
    for name in head:
        frozen -= {id(p) for p in getattr(backbone, name).parameters()}
    for parameter in model.parameters():
        if id(parameter) in frozen:
            parameter.requires_grad_(False)


def make_student(
    model: str,
    seed: int,
    layers: int | Sequence[int] | None = None,
    max_length: int | None = None,
    device: str | None = None,
    head: str = "cls",
    train_layers: Sequence[int] | None = None,
    calibration_pairs: Sequence[tuple[str, str]] | None = None,
) -> CrossEncoder:
    """Loads a backbone as a fresh one-label ``CrossEncoder``, its new head initialised from ``seed``.

    Args:
        model: Path or hub id of the backbone.
        seed: Seeds torch/numpy/random before loading, so the new head is reproducible.
        layers: Keep only the first ``layers`` layers, or the layers at these indices (see :func:`truncate_layers`).
        max_length: Maximum sequence length of (query, document) pairs.
        device: Device; default as sentence-transformers decides.
        head: ``"cls"``: the library's sequence-classification model (a new classifier on the [CLS]
            vector). ``"mean"``: ``Transformer`` (feature extraction), ``Pooling("mean")`` and
            ``Dense(hidden, 1, module_output_name="scores")``: a bi-encoder checkpoint's mean-pooled
            embedding, which it was trained to make meaningful, feeds the new score layer.
            ``"cosine"``: ``Transformer``, :class:`~st_distill.models.heads.SegmentCosine` (the cosine of the
            query's and the document's mean token embeddings, encoded jointly) and ``Dense(1, 1)``:
            a bi-encoder checkpoint that ranks before any training (BERT-style tokenizers only).
        train_layers: Indices of the layers that train, counted in the student after truncation (so
            with ``layers=[0, 5]``, ``train_layers=[1]`` trains the backbone's layer 5); the embeddings and
            the other layers are frozen, the head trains (see :func:`freeze_layers`). ``None``: all train.
        calibration_pairs: For ``head="cosine"``: (query, document) pairs of the training data (e.g.
            :func:`sample_pairs`); the dense layer starts as the z-score of the cosine over them
            (weight ``1/std``, bias ``-mean/std``), so scores start centred with unit spread, which a
            pointwise loss (BCE) needs as much as the ranking losses. Without them: weight 20 (the
            library's contrastive scale), bias 0, which only ranking losses are indifferent to.

    Raises:
        ValueError: On an unknown head, or ``train_layers`` naming a layer the student does not have.
    """
    from sentence_transformers.cross_encoder import CrossEncoder
    from transformers import set_seed

    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; expected one of {', '.join(HEADS)}")
    set_seed(seed)
    if head == "cls":
        student = CrossEncoder(model, num_labels=1, max_length=max_length, device=device)
    else:
        from sentence_transformers.base.modules import Dense, Transformer
        from sentence_transformers.sentence_transformer.modules import Pooling

        from st_distill.models.heads import SegmentCosine

        # num_labels = 1 in the config: CrossEncoder reads it from the transformer when no Dense says otherwise
        transformer = Transformer(model, transformer_task="feature-extraction", max_seq_length=max_length,
                                  config_kwargs={"num_labels": 1})
        width = transformer.get_embedding_dimension()
        if head == "mean":
            modules = [transformer, Pooling(width, "mean"), Dense(width, 1, activation_function=None, module_output_name="scores")]
        else:
            score = Dense(1, 1, activation_function=None, module_input_name="segment_cosine", module_output_name="scores")
            modules = [transformer, SegmentCosine(), score]
        student = CrossEncoder(modules=modules, device=device)
        pooler = getattr(transformer.auto_model, "pooler", None)
        if pooler is not None:  # BERT's [CLS] pooler: unused by these heads, so frozen (DDP needs every trainable parameter used)
            pooler.requires_grad_(False)
    if layers is not None:
        truncate_layers(student, layers)
    if head == "cosine":
        _calibrate_cosine(student, calibration_pairs)
    if train_layers is not None:
        freeze_layers(student, train_layers)
    return student


def _calibrate_cosine(student: CrossEncoder, pairs: Sequence[tuple[str, str]] | None) -> None:
    """Sets the cosine head's dense layer to the z-score of the cosine over ``pairs`` (weight 20, bias 0 without)."""
    import torch

    weight, bias = 20.0, 0.0
    if pairs:
        was_training = student.training
        student.eval()
        with torch.inference_mode():
            features = student.preprocess(list(pairs))
            features = {k: v.to(student.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
            cosines = student[1](student[0](features))["segment_cosine"].float().view(-1)
        student.train(was_training)
        std = float(cosines.std()) if len(cosines) > 1 else 0.0
        if std > 0:
            weight, bias = 1.0 / std, -float(cosines.mean()) / std
    with torch.no_grad():
        student[2].linear.weight.fill_(weight)
        student[2].linear.bias.fill_(bias)


def sample_pairs(dataset: Dataset, n: int = 64) -> list[tuple[str, str]]:
    """Up to ``n`` (query, document) pairs from rows spread evenly over a built dataset, any format.

    Pointwise rows give (query, document); n-tuple rows (query, positive, negative_1...) one pair per
    document column; listwise rows (query, docs) one pair per document.
    """
    columns = [c for c in dataset.column_names if c not in ("query", "label", "scores")]
    pairs: list[tuple[str, str]] = []
    step = max(1, len(dataset) // max(1, n))
    for index in range(0, len(dataset), step):
        row = dataset[index]
        for column in columns:
            docs = row[column] if isinstance(row[column], list) else [row[column]]
            pairs.extend((row["query"], doc) for doc in docs)
        if len(pairs) >= n:
            break
    return pairs[:n]


def load_student(path: str | os.PathLike, max_length: int | None = None, device: str | None = None) -> CrossEncoder:
    """Loads a saved student, trusting the module classes of st-distill (:mod:`st_distill.models.heads`) and no others.

    Raises:
        ValueError: When the model's ``modules.json`` names a module outside sentence-transformers and st-distill.
    """
    from st_distill.models import load_cross_encoder

    return load_cross_encoder(path, max_length=max_length, device=device)


@contextlib.contextmanager
def fast_forward(model: CrossEncoder, bf16: bool = True, tokens_per_chunk: int | None = None) -> Iterator[None]:
    """While active, ``model(features)`` runs as a training step should on this hardware.

    - ``bf16``: under autocast to bfloat16 where the device computes it natively
      (:func:`st_distill.models.precision.native_bf16`), the score projection in float32
      (:func:`st_distill.models.precision.float32_head`); float32 elsewhere. Scores come out float32.
    - ``tokens_per_chunk``: a padded batch is scored in chunks of similar-length rows, each cut to its
      longest row and holding at most this many padded tokens, and the scores are put back in the
      batch's order. Rows are right-padded and the attention mask hides padding, so the scores are
      those of the whole batch; a step pads far less (29% of the tokens of a random batch of 16 TREC
      DL pairs are padding). Only ``"scores"`` is returned then, which is what every loss reads.

    The model's own ``forward`` is restored on exit.
    """
    import torch

    from st_distill.models.precision import autocast, autocast_dtype, float32_head
    from st_distill.models.scoring import length_batches

    device = model.device
    reduced = bf16 and autocast_dtype(device) == torch.bfloat16
    forward = model.forward

    def chunked(features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        mask = features.get("attention_mask")
        with autocast(device, enabled=reduced):
            if tokens_per_chunk is None or not isinstance(mask, torch.Tensor) or mask.dim() != 2 or not _right_padded(mask):
                output = forward(features, **kwargs)
                output["scores"] = output["scores"].float()
                return output
            rows, width = mask.shape
            lengths = mask.sum(1)
            order = np.argsort(-lengths.cpu().numpy(), kind="stable")
            scores = []
            for chunk in length_batches(lengths.cpu().numpy(), order, rows, tokens_per_chunk):
                index = torch.as_tensor(chunk, device=mask.device)
                longest = int(lengths[index].max())
                part = {key: _rows(value, index, rows, width, longest) for key, value in features.items()}
                scores.append(forward(part, **kwargs)["scores"].float())
        inverse = torch.empty(rows, dtype=torch.long, device=mask.device)
        inverse[torch.as_tensor(order, device=mask.device)] = torch.arange(rows, device=mask.device)
        return {"scores": torch.cat(scores)[inverse]}

    own = vars(model).get("forward")  # an instance-level forward already there (a wrapper), if any
    model.forward = chunked
    try:
        with float32_head(model) if reduced else contextlib.nullcontext():
            yield
    finally:
        if own is None:
            del model.forward
        else:
            model.forward = own


def _right_padded(mask: Any) -> bool:
    """Whether every row of a 0/1 attention mask is ones then zeros."""
    return bool((mask[:, :-1] >= mask[:, 1:]).all())


def _rows(value: Any, index: Any, rows: int, width: int, longest: int) -> Any:
    """The chunk's part of one feature: rows ``index``, cut to ``longest`` tokens when it is per token."""
    import torch

    if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != rows:
        return value
    value = value[index]
    return value[:, :longest] if value.dim() >= 2 and value.shape[1] == width else value


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
    """The newest complete checkpoint (see :func:`_complete`), or ``None``."""
    complete = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and _complete(p)]
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
    callbacks: Sequence[TrainerCallback] = (),
    chunked: bool | int = True,
) -> dict[str, Any]:
    """Trains ``model`` with ``loss`` on ``dataset`` through ``CrossEncoderTrainer``, resumable.

    Checkpoints go to ``checkpoints`` every ``args["save_steps"]`` steps (only the last is kept);
    when one exists the run resumes from it (model, optimiser, scheduler, data position). The
    trainer's log history is written to ``log_path`` as JSON lines. Steps run under
    :func:`fast_forward`: with ``args["bf16"]``, in bfloat16 where the device computes it natively
    (float32 elsewhere, with a log line); on CPU in float32, in length-sorted chunks unless ``chunked=False``.

    Args:
        model: The student.
        loss: The loss module built for ``model``.
        dataset: The training dataset in the loss's format.
        args: Merged training arguments (``max_steps``, ``learning_rate``, ``warmup_steps``,
            ``weight_decay``, ``max_grad_norm``, ``bf16``, ``save_steps``, ``logging_steps``, ``optimizer``).
            ``bf16`` asks for bfloat16 autocast where the hardware computes it natively; an optional
            ``head_learning_rate`` is the score layer's own (a new layer on a pretrained body
            learns at a higher rate than the body should move).
        seed: Trainer seed (data order, dropout).
        batch_rows: Dataset rows per device batch.
        checkpoints: Checkpoint folder.
        log_path: Where the training log goes.
        started_marker: A file touched when training starts (progress and tests).
        callbacks: ``TrainerCallback`` objects added to the trainer (e.g. learning-curve evaluation).
        chunked: ``True``: on CPU in float32, score each step's pairs in chunks of
            :data:`CPU_TRAIN_TOKENS_PER_CHUNK` padded tokens (:func:`fast_forward`); an int: chunks of
            that many padded tokens on any device and precision; ``False``: each step's batch whole.

    Under ``torchrun`` / ``accelerate launch`` every rank calls this with the same arguments and
    ``batch_rows`` rows per rank (see :func:`rows_per_batch`); the trainer runs DDP, each rank
    writes its own part of a checkpoint, and only rank 0 writes the log and the marker.

    Returns:
        ``{"steps", "seconds", "resumed_from", "train_loss", "processes"}`` (``processes``: the DDP world size).
    """
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    from st_distill.models.precision import native_bf16, score_head

    bf16 = bool(args["bf16"])
    head_lr = args.get("head_learning_rate")
    head = score_head(model) if head_lr is not None else None
    if head_lr is not None and head is None:
        raise ValueError("head_learning_rate: the model has no score layer (a Linear with num_labels outputs)")
    if bf16 and not native_bf16(model.device):
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
        bf16=False,  # autocast comes from fast_forward, where the device computes bfloat16 natively
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
    trainer = CrossEncoderTrainer(model=model, args=training_args, train_dataset=dataset, loss=loss, callbacks=list(callbacks))
    if started_marker is not None and trainer.is_world_process_zero():
        Path(started_marker).touch()
    if resume:
        logger.info("resuming from %s", resume)
    started = time.perf_counter()
    if chunked is True:  # chunks pay in float32 on CPU (fewer padded tokens), not under bfloat16 autocast (measured)
        tokens = CPU_TRAIN_TOKENS_PER_CHUNK if model.device.type == "cpu" and not (bf16 and native_bf16(model.device)) else None
    else:
        tokens = int(chunked) or None
    with fast_forward(model, bf16=bf16, tokens_per_chunk=tokens):
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
        "train_loss": cell_train_loss(trainer.state.log_history, output.training_loss, _checkpoint_step(resume), trainer.state.global_step),
        "processes": int(training_args.world_size),
    }


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
