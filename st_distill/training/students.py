"""Students: a backbone loaded as a one-label ``CrossEncoder`` to train, with its score head and depth.

:func:`make_student` loads a backbone as a fresh one-label ``CrossEncoder`` (a classifier on [CLS],
mean pooling and a dense layer, or the cosine head of :mod:`st_distill.models.heads`), optionally
keeping only some layers (:func:`truncate_layers`) and training only some (:func:`freeze_layers`).
The student's ``max_seq_length`` (the tokens of a (query, document) pair) is set here, when it is
made or loaded, and read by everything that tokenises for it. :func:`save_student` saves a trained
one, :func:`load_student` loads it back.

Example:
    ::

        from st_distill.training import make_student

        student = make_student("sentence-transformers/all-MiniLM-L6-v2", seed=0, layers=[0, 5], max_length=256, head="cosine")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from sentence_transformers.base.modules import Dense, Transformer
from sentence_transformers.cross_encoder import CrossEncoder
from sentence_transformers.sentence_transformer.modules import Pooling
from torch import nn
from transformers import set_seed

from st_distill.io import current_umask
from st_distill.models import cap_max_length, load_cross_encoder
from st_distill.models.heads import SegmentCosine

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = ["HEADS", "make_student", "load_student", "save_student", "sample_pairs", "truncate_layers", "freeze_layers"]

#: Score heads :func:`make_student` builds: the library's classifier on the [CLS] vector; mean
#: pooling of the token embeddings and a dense layer to one score; the cosine of the two segments'
#: mean embeddings (:class:`st_distill.models.heads.SegmentCosine`) and a dense layer.
HEADS = ("cls", "mean", "cosine")


def _layer_stack(model: CrossEncoder) -> tuple[Any, str, Any]:
    """``(owner, attribute, module list)`` of the transformer layers of ``model``'s backbone.

    Raises:
        ValueError: If the backbone has no ``encoder.layer`` or ``layers`` module list.
    """
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
        max_length: The student's ``max_seq_length``: tokens of a (query, document) pair, longer pairs
            truncated. A property of the model from here on: training and scoring read it there.
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
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; expected one of {', '.join(HEADS)}")
    set_seed(seed)
    if head == "cls":
        student = CrossEncoder(model, num_labels=1, max_length=max_length, device=device)
    else:
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
    if max_length is not None:
        student.max_seq_length = cap_max_length(student, max_length)
    if layers is not None:
        truncate_layers(student, layers)
    if head == "cosine":
        _calibrate_cosine(student, calibration_pairs)
    if train_layers is not None:
        freeze_layers(student, train_layers)
    return student


def _calibrate_cosine(student: CrossEncoder, pairs: Sequence[tuple[str, str]] | None) -> None:
    """Sets the cosine head's dense layer to the z-score of the cosine over ``pairs`` (weight 20, bias 0 without)."""
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

    Args:
        path: The folder :func:`save_student` wrote.
        max_length: Overrides the saved ``max_seq_length`` (capped at the model's positions).
        device: Device; default as sentence-transformers decides.

    Returns:
        The student, as :func:`st_distill.models.load_cross_encoder` loads it.

    Raises:
        ValueError: When the model's ``modules.json`` names a module outside sentence-transformers and st-distill.
    """
    return load_cross_encoder(path, max_length=max_length, device=device)


def save_student(model: CrossEncoder, path: str | os.PathLike) -> None:
    """Saves ``model`` with ``save_pretrained``, every file with the permissions the umask gives.

    The weights file is written by safetensors, which creates it ``0600`` whatever the umask; it is
    given ``0666`` less the umask here, like every other file of the folder (``0644`` under ``022``).

    Raises:
        OSError: If the model could not be written (a full disk, a file-size limit: safetensors says
            only ``File too large``); the message names ``path``.
    """
    try:
        model.save_pretrained(str(path))
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, f"{exc.strerror or exc}: saving the model to {path}", str(path)) from exc
    except Exception as exc:  # safetensors' SafetensorError is no OSError
        if type(exc).__name__ != "SafetensorError":
            raise
        raise OSError(f"saving the model to {path} failed: {exc}") from exc
    mode = 0o666 & ~current_umask()
    for weights in Path(path).rglob("*.safetensors"):
        os.chmod(weights, mode)
