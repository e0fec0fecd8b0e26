"""Build phase: one training dataset per objective, in the registry's format, under ``data/<objective>/``."""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any

from st_distill.bench.config import HF_PREFIX, BenchConfig
from st_distill.bench.workspace import DONE, Workspace, atomic_folder
from st_distill.data.formats import Collection, top_k
from st_distill.data.negatives import denoise_candidates, sparse_labels
from st_distill.data.normalize import table_run
from st_distill.data.sources import load_msmarco_subset, msmarco_margin_triples
from st_distill.data.store import TextStore
from st_distill.data.teacher_files import read_llm_ranking, read_teacher_triples
from st_distill.dataset import BuildReport, build_from_sources, resolve_negatives, save_dataset, size_argument
from st_distill.io import read_json, write_json
from st_distill.objectives import get_objective

logger = logging.getLogger(__name__)

__all__ = ["build_objective_dataset", "build_phase", "build_settings", "check_built", "normalization"]


def build_objective_dataset(config: BenchConfig, objective: str, n_negatives: int | None, sources: dict[str, Collection], teacher_scores: dict | None):
    """Builds one objective's training dataset over every training source (concatenated).

    Where a source's corpus is a memory-mapped text store (MS MARCO scale), the dataset joins
    texts lazily (ids in the table, texts on access).
    """
    from datasets import concatenate_datasets

    fmt = get_objective(objective).dataset_format
    n = n_negatives if n_negatives is not None else resolve_negatives(fmt, objective)
    entry = next((o for o in config.objectives if o.name == objective), None)
    from_triples = entry is not None and entry.data == "triples"
    t = config.teacher
    parts = []
    specs = {spec.name: spec for spec in config.train_sources}
    for name, source in sources.items():
        spec = specs[name]
        queries, corpus = source.queries, source.corpus
        lazy = isinstance(corpus, TextStore)
        if lazy and not isinstance(queries, TextStore):
            queries = TextStore.from_texts(queries, Workspace(config.output_dir).source(name) / "queries.arrow")
        qrels = sparse_labels(source.qrels, source.relevance_level, documents=corpus) if spec.labels == "sparse" else source.qrels
        collection = dataclasses.replace(source, queries=queries, qrels=qrels)
        kwargs: dict[str, Any] = {**size_argument(fmt, n), "max_positives": spec.max_positives, "seed": 0, "lazy": lazy}
        if fmt.teacher is not None and not from_triples:
            kwargs["normalize"] = normalization(config, objective)
        scores = (teacher_scores or {}).get(name)
        scores = scores.table() if scores is not None else None  # the (qid, docid, score) table the builder takes
        if fmt.from_candidates:  # lists, or mse's rows: each query's ranked candidates
            if t.rankings is not None and fmt.kind == "listwise":
                # ids are checked against the source's queries only when all of them are loaded:
                # with max_queries, a ranking of a query past the cut is expected, and left out
                ranking = read_llm_ranking(t.rankings, query_ids=source.queries if spec.max_queries is None else None)
                kwargs["candidates"] = {qid: docs for qid, docs in ranking.items() if qid in source.queries}
            else:
                kwargs["candidates"] = source.run
            if fmt.teacher == "scores" or t.rankings is None:
                kwargs["teacher_scores"] = scores
        elif from_triples:
            kwargs["triples"] = _teacher_triples(t.scores_file, source.queries if spec.max_queries is not None else None)
        else:
            window = run = top_k(source.run, config.negatives.depth)
            if entry is not None and entry.denoise is not None:
                run = denoise_candidates(window, qrels, table_run(scores), entry.denoise, source.relevance_level)
                logger.info("%s from %s: denoised negatives, %d of %d candidates kept", objective, name,
                            sum(map(len, run.values())), sum(map(len, window.values())))
            if config.negatives.sampling == "top":
                kwargs.update(negatives_run=run, negatives_per_query=n, depth=config.negatives.depth, strategy="top")
            else:
                kwargs["candidates"] = run
            if fmt.teacher == "scores":
                kwargs["teacher_scores"] = scores
        dataset, report = build_from_sources(objective, collection, **kwargs)
        logger.info("built %s from %s: %d rows, %d queries", objective, name, report.rows, report.queries)
        parts.append((dataset, report))
    dataset = parts[0][0] if len(parts) == 1 else concatenate_datasets([d for d, _ in parts])
    return dataset, [r for _, r in parts]


def _teacher_triples(spec, kept_queries=None):
    """A teacher-triples file, or the published scores of a ``hf://ORG/DATASET/SUBSET`` spec as a table.

    With ``kept_queries`` (a source cut by ``max_queries``), the table of the triples of those
    queries: the others are expected (the file covers every query), not unknown ids.
    """
    if isinstance(spec, str) and spec.startswith(HF_PREFIX):
        table = _hub_triples(spec)
    elif kept_queries is not None:
        table = read_teacher_triples(spec)
    else:
        return spec
    if kept_queries is not None:
        import pyarrow as pa
        import pyarrow.compute as pc

        table = table.filter(pc.is_in(table.column("qid"), value_set=pa.array(list(kept_queries), pa.string())))
    return table


@functools.lru_cache(maxsize=1)
def _hub_triples(spec: str):
    """Loads a hub subset once per process, however many objectives (bce, hinge, marginmse) train on it."""
    org, name, subset = spec[len(HF_PREFIX):].split("/")
    return msmarco_margin_triples(load_msmarco_subset(subset, repo=f"{org}/{name}"))


#: The objective's own build settings, stored with its dataset and checked when it is reused.
SETTINGS = "settings.json"


def normalization(config: BenchConfig, objective: str) -> str:
    """How teacher scores become the labels of ``objective``: its own ``normalize``, else ``teacher.normalize``."""
    return config.objective(objective).normalize or config.teacher.normalize


def build_settings(config: BenchConfig, objective: str) -> dict[str, Any]:
    """What, besides the shared inputs (``inputs.json``), decides ``data/<objective>/``'s content."""
    entry = config.objective(objective)
    settings = {"n_negatives": entry.n_negatives, "data": entry.data, "normalize": normalization(config, objective)}
    return settings if entry.denoise is None else {**settings, "denoise": entry.denoise}  # unset: as recorded before the key


def check_built(config: BenchConfig, ws: Workspace, objective: str) -> None:
    """Checks that ``data/<objective>/`` was built with the config's settings for it.

    Raises:
        ValueError: When it was built with others (``n_negatives``, ``data``, ``normalize``).
    """
    final = ws.data(objective)
    built = read_json(final / SETTINGS) if (final / SETTINGS).is_file() else None
    settings = build_settings(config, objective)
    if built != settings:
        raise ValueError(f"{final}: built with other settings ({built}) than the config's now ({settings}); "
                         "use a new --output, or delete this folder and the cells of this objective to rebuild it")


def build_phase(config: BenchConfig, ws: Workspace, objective: str, sources: dict[str, Collection], teacher_scores: dict) -> Path:
    """Builds and saves (once) the training dataset of one objective under ``data/<objective>/``."""
    final = ws.data(objective)
    if (final / DONE).is_file():
        check_built(config, ws, objective)
        return final
    dataset, reports = build_objective_dataset(config, objective, config.objective(objective).n_negatives, sources, teacher_scores)
    with atomic_folder(final) as tmp:
        report = reports[0]
        if len(reports) > 1:
            report = BuildReport(**{**reports[0].to_dict(), "rows": len(dataset), "queries": sum(r.queries for r in reports),
                                    "skipped": {k: sum(r.skipped.get(k, 0) for r in reports) for r in reports for k in r.skipped}})
        save_dataset(dataset, report, tmp)
        write_json(tmp / "sources.json", {name: r.to_dict() for name, r in zip(sources, reports)})
        write_json(tmp / SETTINGS, build_settings(config, objective))
        (tmp / DONE).touch()
    return final
