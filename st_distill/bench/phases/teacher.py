"""Teacher phase: train a teacher where the config asks, then score every training pair with the
teachers through the resumable cache ``teacher/<source>/``."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from typing import Any

from st_distill.bench.config import TRAIN_KEYS, BenchConfig
from st_distill.bench.phases.build import build_objective_dataset
from st_distill.bench.plan import passages_per_row
from st_distill.bench.workspace import DONE, CellFolder, Distributed, Workspace, atomic_folder
from st_distill.data.formats import Collection
from st_distill.dataset import load_built_dataset, save_dataset
from st_distill.io import write_json
from st_distill.models import resolve_model
from st_distill.objectives import get_objective
from st_distill.teachers import BiEncoderTeacher, CrossEncoderTeacher, score_with_teachers
from st_distill.training import make_student, rows_per_batch, save_student, train_model

logger = logging.getLogger(__name__)

__all__ = ["teacher_models", "train_teacher", "teacher_phase"]


def teacher_models(config: BenchConfig, ws: Workspace) -> list:
    """The teachers to score with (the teacher phase's trained model, see :func:`train_teacher`, first)."""
    t = config.teacher
    teachers = []
    if t.source == "train":
        model_dir = ws.teacher_model
        teachers.append(CrossEncoderTeacher(str(model_dir), name="trained-teacher", max_length=t.max_length, batch_size=t.batch_size))
    for model in t.models:
        path = resolve_model(model.model)
        if model.kind == "bi-encoder":
            teachers.append(BiEncoderTeacher(path, max_length=t.max_length, batch_size=t.batch_size))
        else:
            teachers.append(CrossEncoderTeacher(path, max_length=t.max_length, batch_size=t.batch_size))
    return teachers


def train_teacher(config: BenchConfig, ws: Workspace, sources: Callable[[], dict[str, Collection]] | None, dist: Distributed) -> None:
    """The teacher phase's training: ``train_backbone`` with ``train_objective`` on the training sources.

    Every rank calls it (the trainer runs DDP); rank 0 decides whether ``teacher/model/`` is still
    to be made, builds the data (from ``sources()``, called on rank 0 only) and saves the model
    (atomically, through ``teacher/model.partial/``, where a killed run's checkpoints resume).
    """
    model_dir = ws.teacher_model
    if not dist.broadcast(not (model_dir / DONE).is_file()):
        return
    t = config.teacher
    objective = get_objective(t.train_objective)
    args = {**{k: v for k, v in objective.defaults.items() if k in TRAIN_KEYS}, **config.train, **t.train}
    data_dir = ws.teacher_data
    work = CellFolder(ws.teacher_partial)
    if dist.is_main:
        if not (data_dir / DONE).is_file():
            dataset, reports = build_objective_dataset(config, t.train_objective, None, sources(), None)
            with atomic_folder(data_dir) as tmp:
                save_dataset(dataset, reports[0], tmp)
                (tmp / DONE).touch()
        work.path.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    dataset = load_built_dataset(data_dir)
    model = make_student(resolve_model(t.train_backbone), seed=0, max_length=t.max_length)
    logger.info("teacher phase: training %s with %s for %d steps", t.train_backbone, t.train_objective, args["max_steps"])
    summary = train_model(
        model, objective.loss(model), dataset, args, seed=0,
        batch_rows=rows_per_batch(args["passages_per_batch"], passages_per_row(t.train_objective, None), dist.world_size),
        checkpoints=work.checkpoints, log_path=work.training_log,
    )
    dist.barrier()  # every rank has written its part of the last checkpoint
    if dist.is_main:
        model.model_card_data.model_name = f"st-distill teacher: {t.train_backbone} trained with {t.train_objective}"
        save_student(model, work.path)
        shutil.rmtree(work.checkpoints, ignore_errors=True)
        write_json(work.summary, summary)
        work.done.touch()
        shutil.rmtree(model_dir, ignore_errors=True)
        os.replace(work.path, model_dir)
    dist.barrier()



def teacher_phase(config: BenchConfig, ws: Workspace, sources: dict[str, Collection]) -> dict[str, Any]:
    """Scores every training (query, candidate) pair — candidates and judged positives — with the
    teacher(s), through the resumable cache ``teacher/<source>/``.

    Returns:
        ``{source: TeacherScores}``; empty when the config has no model teacher.
    """
    if config.teacher.source not in ("models", "train"):
        return {}
    teachers = teacher_models(config, ws)
    scores = {}
    for name, source in sources.items():
        pairs = {qid: dict(docs) for qid, docs in source.run.items()}
        for qid in pairs:
            for docid, grade in source.qrels.get(qid, {}).items():
                if grade >= source.relevance_level and docid in source.corpus:
                    pairs[qid].setdefault(docid, 0.0)
        logger.info("teacher phase: %s, %d pairs", name, sum(len(d) for d in pairs.values()))
        scores[name] = score_with_teachers(
            teachers, pairs, source.queries, source.corpus, cache_dir=ws.teacher_cache(name), ensemble=config.teacher.ensemble,
            normalize=config.teacher.normalize,
        )
    return scores
