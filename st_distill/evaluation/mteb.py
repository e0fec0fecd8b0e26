"""MTEB integration: evaluate a CrossEncoder with ``mteb.evaluate``, and write the material to submit it.

MTEB runs a cross-encoder only where each query comes with candidates to re-rank: its
Reranking tasks carry them, and a Retrieval task gets them from a first stage through
``AbsTaskRetrieval.convert_to_reranking``, which reads a ``{TaskName}_predictions.json``
file. :func:`evaluate_mteb` takes the first stage in any of the forms users have:

- ``None``: the task's own candidates (MTEB Reranking tasks);
- a TREC run file (``qid Q0 docid rank score tag``), converted by :func:`write_predictions`
  into MTEB's predictions file, cut to the top-k of each query in trec_eval order;
- a folder holding ``{TaskName}_predictions.json`` files from an earlier
  ``mteb.evaluate(..., prediction_folder=...)``;
- a first-stage model MTEB can run (a ``SentenceTransformer``, a ``ModelMeta`` or a model
  name from MTEB's registry): MTEB runs it with a ``prediction_folder`` first;
- a ``{task name: any of the above}`` mapping, one first stage per task.

Results land in MTEB's own layout (``mteb.ResultCache``:
``results/<model>/<revision>/<Task>.json``). The first stage is recorded twice, both ways
MTEB itself supports: its name and revision appear in the scores as
``previous_results_model_meta`` (MTEB copies it from the predictions file), and a re-ranked
Retrieval task is saved under ``experiments/first_stage_<name>__first_stage_revision_<rev>__top_k_<k>/``
(the model's ``experiment_kwargs``), so results over different first stages never overwrite or
stand in for each other in the cache. Reranking tasks over their own candidates go to the
model's main folder: those are the results MTEB's leaderboard takes from a re-ranker.

The material to submit a model (its ``ModelMeta`` and that as a Python module) is written by
:mod:`st_distill.evaluation.submission`; its names are still importable from here (deprecated).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    import mteb
except ImportError as exc:  # mteb 2.24+ needs Python 3.11; st-distill installs it there only
    raise ImportError("MTEB evaluation needs the mteb package (mteb>=2.26,<3, Python 3.11+): "
                      "pip install 'mteb>=2.26,<3'") from exc
from datasets import Dataset
from mteb.abstasks.abstask import AbsTask
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.models.model_meta import ModelMeta
from mteb.models.sentence_transformer_wrapper import CrossEncoderWrapper
from sentence_transformers import SentenceTransformer

from st_distill.data.formats import BeirData, Run, load_beir, read_trec_run, top_k as run_top_k
from st_distill.io import atomic_write, file_sha256
from st_distill.models import load_cross_encoder

if TYPE_CHECKING:
    from sentence_transformers.cross_encoder import CrossEncoder

logger = logging.getLogger(__name__)

DEFAULT_TOP_K = 100

#: Names that moved to :mod:`st_distill.evaluation.submission`, still importable from here (deprecated).
_MOVED_TO_SUBMISSION = ("KNOWN_TRAINING_DATASETS", "model_meta", "model_meta_source", "write_model_meta_source")


def __getattr__(name: str) -> Any:
    """The deprecated aliases of the names moved to :mod:`st_distill.evaluation.submission`."""
    if name in _MOVED_TO_SUBMISSION:
        # imported here, not at the top: submission imports this module (a real cycle)
        from st_distill.evaluation import submission

        warnings.warn(
            f"st_distill.evaluation.mteb.{name} moved to st_distill.evaluation.submission.{name}; "
            "the old name will be removed in a later release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(submission, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_path_name(value: str, argument: str) -> str:
    """Checks a name that becomes part of a path under an output folder (a model name, a revision, a
    task name): MTEB files results under ``results/<model>/<revision>/<task>.json``.

    Args:
        value: The name; ``/`` may separate parts (``organization/model``).
        argument: What the name is, for the message (``"revision"``, ``"task name"``...).

    Returns:
        ``value``.

    Raises:
        ValueError: Naming ``argument``, when ``value`` is empty, starts with ``/``, has an empty or
            ``..`` part, or holds a NUL or a backslash: it would lead out of the folder.
    """
    parts = value.split("/")
    if not value or "\\" in value or "\0" in value or any(part in ("", "..") for part in parts):
        raise ValueError(
            f"{argument} {value!r} would lead out of the output folder: use a name without '..' parts, "
            "backslashes, or a leading or doubled '/'"
        )
    return value


# --------------------------------------------------------------------------- tasks


class _LocalRetrievalTask(AbsTaskRetrieval):
    """An MTEB retrieval task over data in memory; :func:`local_retrieval_task` makes one subclass per data set.

    The data live on the class (``_data``, ``_query_ids``), next to the metadata, because
    ``AbsTask.unload_data`` drops instance-level metadata: a class per task keeps both.
    """

    _data: BeirData
    _query_ids: list[str]

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        """Builds the MTEB split from the in-memory data; never touches the hub."""
        if self.data_loaded:
            return
        data, query_ids = self._data, self._query_ids
        split = self.metadata.eval_splits[0]
        self.dataset = {
            "default": {
                split: {
                    # load_beir already joined "title text" as MTEB's corpus loader does
                    "corpus": Dataset.from_dict({"id": list(data.corpus), "text": list(data.corpus.values())}),
                    "queries": Dataset.from_dict({"id": query_ids, "text": [data.queries[q] for q in query_ids]}),
                    "relevant_docs": {q: dict(data.qrels[q]) for q in query_ids},
                    "top_ranked": None,
                }
            }
        }
        self.data_loaded = True


def _data_revision(data: BeirData, query_ids: list[str]) -> str:
    """A content hash of the task's data, used as MTEB's dataset revision (``local-<12 hex>``)."""
    digest = hashlib.sha256()
    for part in (data.corpus, {q: data.queries[q] for q in query_ids}, {q: data.qrels[q] for q in query_ids}):
        digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    return f"local-{digest.hexdigest()[:12]}"


def local_retrieval_task(
    source: str | os.PathLike | BeirData,
    *,
    name: str | None = None,
    split: str = "test",
    like: str | None = None,
    query_ids: Iterable[str] | None = None,
    languages: list[str] | None = None,
) -> AbsTaskRetrieval:
    """Makes an MTEB retrieval task over local data: a BEIR folder or a :class:`BeirData`.

    The task is a real ``AbsTaskRetrieval`` subclass whose ``load_data`` builds MTEB's
    split from the local files, so ``mteb.evaluate`` runs it without the hub. Its dataset
    revision is ``local-`` and a hash of the data, so that MTEB's cache tells copies apart.

    Args:
        source: A BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``) or
            data already loaded (e.g. from TSV files with :mod:`st_distill.data.formats`).
        name: The task name (results file ``<name>.json``). Defaults to ``like`` or the folder name.
        split: The qrels split to load and evaluate.
        like: A task in MTEB's registry whose descriptive metadata (main score, languages,
            domains, licence, citation) the local task copies; it must have a single subset.
            A local copy keeps its ``local-`` revision: do not submit its results as MTEB's task.
        query_ids: Evaluate only these queries (e.g. a subset to keep tests fast).
        languages: Languages as MTEB codes when ``like`` is not given (default ``["eng-Latn"]``).

    Returns:
        The task, not yet loaded.

    Raises:
        ValueError: On an unknown or multilingual ``like`` task, query ids without judgements, or a
            name that would lead out of a folder (see :func:`check_path_name`).
        FileNotFoundError: When the BEIR folder lacks a file or the split.
    """
    if name is not None:
        check_path_name(name, "task name")
    if isinstance(source, BeirData):
        data, path = source, "local"
    else:
        data, path = load_beir(source, split), str(source)
    name = name or like or Path(path).name
    judged = [q for q in data.qrels if q in data.queries]
    if query_ids is None:
        selected = judged
    else:
        selected = list(dict.fromkeys(query_ids))
        unknown = [q for q in selected if q not in data.qrels or q not in data.queries]
        if unknown:
            raise ValueError(
                f"task {name}: {len(unknown)} requested query id(s) have no text or no judgement "
                f"in split {split!r} (first: {unknown[:5]})"
            )
    if not selected:
        raise ValueError(f"task {name}: no judged query with a text in split {split!r}")
    dataset = {"path": path, "revision": _data_revision(data, selected)}
    if like is not None:
        try:
            base = mteb.get_task(like).metadata
        except KeyError as exc:
            raise ValueError(f"like={like!r}: not an MTEB task ({exc.args[0]})") from exc
        if base.is_multilingual:
            raise ValueError(f"like={like!r}: a multilingual task cannot describe a single local split")
        # the local data carry no candidates of their own: a first stage always supplies them
        update = {"name": name, "dataset": dataset, "eval_splits": [split], "type": "Retrieval"}
        metadata = base.model_copy(update=update)
    else:
        metadata = TaskMetadata(
            name=name,
            description=f"Local retrieval data from {path} (split {split}).",
            dataset=dataset,
            type="Retrieval",
            category="t2t",
            modalities=["text"],
            eval_splits=[split],
            eval_langs=languages or ["eng-Latn"],
            main_score="ndcg_at_10",
        )
    task_class = type(name, (_LocalRetrievalTask,), {"metadata": metadata, "_data": data, "_query_ids": selected})
    return task_class()


def resolve_task(spec: str | AbsTask) -> AbsTaskRetrieval:
    """Turns a task given by the user into an MTEB retrieval task.

    Args:
        spec: An ``AbsTask``; an MTEB task name (``"SciDocsRR"``); a local BEIR folder; or
            ``"NAME=FOLDER"``, a local folder evaluated as task ``NAME`` (described like MTEB's
            task of that name where there is one, see :func:`local_retrieval_task`).

    Raises:
        ValueError: When the task is unknown or is not a retrieval/reranking task.
    """
    if isinstance(spec, AbsTask):
        task = spec
    else:
        name, sep, folder = spec.partition("=")
        if sep:
            task = local_retrieval_task(folder, name=name, like=name if is_registered_task(name) else None)
        elif Path(spec).is_dir():
            task = local_retrieval_task(spec)
        else:
            try:
                task = mteb.get_task(spec)
            except KeyError as exc:
                raise ValueError(f"{spec!r} is neither a local BEIR folder nor an MTEB task ({exc.args[0]})") from exc
    if not isinstance(task, AbsTaskRetrieval):
        raise ValueError(
            f"task {task.metadata.name} is a {task.metadata.type} task: a cross-encoder runs on "
            "Retrieval and Reranking tasks only"
        )
    return task


def is_registered_task(task_name: str) -> bool:
    """Whether ``task_name`` is a task of MTEB's registry."""
    try:
        mteb.get_task(task_name)
    except KeyError:
        return False
    return True


# --------------------------------------------------------------------------- first stages


def _file_revision(path: Path) -> str:
    """A file's revision for MTEB: the first 12 hex digits of its SHA-256."""
    return file_sha256(path)[:12]


def _task_splits(task: AbsTaskRetrieval) -> list[tuple[str, str]]:
    """The ``(hf_subset, split)`` pairs the task evaluates; loads its data if needed."""
    if not task.data_loaded:
        task.load_data()
    task.convert_v1_dataset_format_to_v2(num_proc=None)
    return [(subset, split) for subset in task.hf_subsets for split in task.eval_splits]


def write_predictions(
    run: Run,
    task: AbsTaskRetrieval,
    folder: str | os.PathLike,
    *,
    top_k: int = DEFAULT_TOP_K,
    name: str = "trec-run",
    revision: str | None = None,
    source: str = "",
) -> Path:
    """Writes a first-stage run as MTEB's predictions file for ``task``: ``folder/{TaskName}_predictions.json``.

    The file has MTEB's layout, ``{"mteb_model_meta": {...}, subset: {split: {qid: {docid:
    score}}}}``, with each query's top-k in trec_eval order (score, then document id,
    descending), so that ``convert_to_reranking`` re-ranks exactly the candidates
    ``st-distill eval --depth k`` re-ranks. Run queries the task does not evaluate are
    dropped (counted in a log line); task queries missing from the run are logged, and MTEB
    scores them as retrieving nothing.

    Args:
        run: ``{qid: {docid: score}}``, e.g. from :func:`st_distill.data.formats.read_trec_run`.
        task: The retrieval task; its data are loaded if they are not.
        folder: Where to write the file.
        top_k: Candidates kept per query.
        name: The first stage's name, recorded by MTEB as ``previous_results_model_meta``.
        revision: The first stage's revision (e.g. a hash of the run file).
        source: The run's origin, for messages (e.g. its path).

    Returns:
        The predictions file.

    Raises:
        ValueError: When the run has no query of one of the task's splits, or names documents
            that are not in the task's corpus.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    task_name = check_path_name(task.metadata.name, "task name")
    where = source or "the run"
    predictions: dict[str, Any] = {
        "mteb_model_meta": {"model_name": name, "revision": revision, "top_k": top_k, "kind": "trec-run"}
    }
    used: set[str] = set()
    for subset, split in _task_splits(task):
        split_data = task.dataset[subset][split]
        query_ids = list(split_data["queries"]["id"])
        selected = {q: run[q] for q in query_ids if q in run}
        if not selected:
            raise ValueError(
                f"{where} has no query of task {task_name} (subset {subset}, split {split}): the task's query ids "
                f"are e.g. {query_ids[:3]}, the run's are e.g. {list(run)[:3]}. Is it a run for another task?"
            )
        corpus_ids = set(split_data["corpus"]["id"])
        missing = [(q, d) for q, docs in selected.items() for d in docs if d not in corpus_ids]
        if missing:
            raise ValueError(
                f"{where}: {len(missing)} document(s) are not in the corpus of task {task_name} "
                f"(first: query {missing[0][0]!r}, document {missing[0][1]!r})"
            )
        unranked = len(query_ids) - len(selected)
        if unranked:
            logger.warning("%s: %d of %d queries of %s/%s have no candidate", where, unranked, len(query_ids), task_name, split)
        predictions.setdefault(subset, {})[split] = run_top_k(selected, top_k)
        used.update(selected)
    if len(used) < len(run):
        logger.info("%s: %d run queries are not queries of task %s and were left out", where, len(run) - len(used), task_name)
    path = Path(folder) / f"{task_name}_predictions.json"
    with atomic_write(path) as f:
        json.dump(predictions, f)
    return path


def _first_stages_per_task(first_stage: Any, tasks: list[AbsTaskRetrieval]) -> list[Any]:
    """The first stage of each task, checked before anything runs."""
    given = dict(first_stage) if isinstance(first_stage, Mapping) else None
    stages = []
    for task in tasks:
        name, kind = task.metadata.name, task.metadata.type
        stage = given.get(name) if given is not None else first_stage
        if stage is None and not kind.endswith("Reranking"):
            if given is not None:
                raise ValueError(f"no first stage given for task {name} (first stages given for: {', '.join(given)})")
            raise ValueError(
                f"task {name} is a {kind} task: a cross-encoder needs a first stage to re-rank "
                "(a TREC run, a folder of MTEB predictions or a first-stage model)"
            )
        stages.append(stage)
    unknown = sorted(set(given or ()) - {task.metadata.name for task in tasks})
    if unknown:
        raise ValueError(f"first stages given for tasks that are not evaluated: {', '.join(unknown)}")
    return stages


def _prepare_first_stage(
    task: AbsTaskRetrieval,
    first_stage: Any,
    *,
    top_k: int,
    work_folder: Path,
    cache: mteb.ResultCache,
    encode_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """Turns ``task`` into re-ranking over ``first_stage``; returns what identifies the first stage."""
    if isinstance(first_stage, (str, os.PathLike)) and Path(first_stage).is_file():
        path = Path(first_stage)
        name, revision = path.stem, _file_revision(path)
        predictions = write_predictions(
            read_trec_run(path), task, work_folder / f"{name}-{revision}", top_k=top_k, name=name,
            revision=revision, source=str(path),
        )
    elif isinstance(first_stage, (str, os.PathLike)) and Path(first_stage).is_dir():
        predictions = Path(first_stage) / task.prediction_file_name
        if not predictions.is_file():
            raise FileNotFoundError(f"{predictions}: no such file (no predictions of task {task.metadata.name} there)")
        with open(predictions, encoding="utf-8") as f:
            recorded = json.load(f).get("mteb_model_meta") or {}
        name = str(recorded.get("model_name") or Path(first_stage).name)
        revision = str(recorded.get("revision") or _file_revision(predictions))
    else:
        model = first_stage
        if isinstance(model, str):
            try:
                model = mteb.get_model_meta(model)
            except KeyError as exc:
                raise ValueError(
                    f"first stage {model!r} is not an existing run file, nor a folder of MTEB predictions, "
                    f"nor a model in MTEB's registry ({exc.args[0]})"
                ) from exc
        name, revision = _model_identity(model)
        check_path_name(revision, "first-stage model revision")  # the name's '/' become '__' below
        predictions_folder = work_folder / f"{name.replace('/', '__')}-{revision}"
        predictions = predictions_folder / task.prediction_file_name
        if not predictions.is_file():
            _task_splits(task)  # load the data first: MTEB keeps preloaded data for the re-ranking
            mteb.evaluate(
                model, task, cache=cache, prediction_folder=predictions_folder, overwrite_strategy="always",
                encode_kwargs=dict(encode_kwargs), co2_tracker=False, show_progress_bar=False,
            )
    task.convert_to_reranking(predictions, top_k=top_k)
    return {"first_stage": name, "first_stage_revision": revision, "top_k": top_k}


def _model_identity(model: Any) -> tuple[str, str]:
    """``(name, revision)`` of a first-stage model as MTEB records it."""
    if isinstance(model, ModelMeta):
        meta = model
    elif hasattr(model, "mteb_model_meta"):
        meta = model.mteb_model_meta
    else:
        if not isinstance(model, SentenceTransformer):
            raise TypeError(
                f"first stage of type {type(model).__name__}: expected a TREC run file, a predictions folder, "
                "a SentenceTransformer, a ModelMeta or an MTEB model"
            )
        meta = mteb.SentenceTransformerEncoderWrapper(model).mteb_model_meta
    return str(meta.name), str(meta.revision)


# --------------------------------------------------------------------------- evaluation


def _weights_revision(path: Path) -> str | None:
    """``local-`` and a hash of a local model folder's weight files, or None when there are none."""
    files = sorted(p for pattern in ("*.safetensors", "*.bin") for p in path.glob(pattern))
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(_file_revision(file).encode())
    return f"local-{digest.hexdigest()[:12]}"


def reranker_meta(model: CrossEncoder, *, name: str | None = None, revision: str | None = None) -> ModelMeta:
    """The ``ModelMeta`` MTEB files a CrossEncoder's results under.

    MTEB names a model after ``name_or_path``, which for a local model is a file path, and
    gives it no revision. Here a local model is named ``local/<folder name>`` and its revision
    is a hash of its weights, so that retraining into the same folder never reuses stale results.

    Args:
        model: The CrossEncoder.
        name: ``organization/model`` to file the results under (use the hub id you publish to).
        revision: The model revision (e.g. the hub commit).
    """
    if name is not None and "/" not in name:
        raise ValueError(f"model name {name!r}: expected 'organization/model'")
    meta = ModelMeta.from_cross_encoder(model)
    path = Path(str(meta.name))
    update: dict[str, Any] = {}
    if name is not None:
        update["name"] = name
    elif path.is_dir():
        update["name"] = f"local/{path.name}"
    if revision is not None:
        update["revision"] = revision
    elif meta.revision in (None, "no_revision_available") and path.is_dir():
        update["revision"] = _weights_revision(path) or meta.revision
    meta = meta.model_copy(update=update) if update else meta
    if meta.revision is not None:  # MTEB writes the name with '/' as '__', the revision as it is
        check_path_name(str(meta.revision), "revision")
    return meta


def _summarise(result: Any, split: str) -> dict[str, float]:
    """Mean over the split's subsets of every numeric score of a TaskResult."""
    entries = result.scores.get(split) or next(iter(result.scores.values()))
    summary: dict[str, float] = {}
    for key in entries[0]:
        values = [entry.get(key) for entry in entries]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            summary[key] = float(sum(values) / len(values))
    return summary


def evaluate_mteb(
    model: CrossEncoder | str,
    tasks: Iterable[str | AbsTask] | str | AbsTask,
    *,
    first_stage: Any = None,
    top_k: int = DEFAULT_TOP_K,
    output_folder: str | os.PathLike = "mteb-results",
    model_name: str | None = None,
    revision: str | None = None,
    batch_size: int = 32,
    overwrite: bool = True,
    show_progress_bar: bool = False,
) -> dict[str, dict[str, float]]:
    """Evaluates a CrossEncoder on MTEB Reranking tasks and on Retrieval tasks re-ranked over a first stage.

    Args:
        model: A CrossEncoder, or its hub id or local path.
        tasks: Tasks as accepted by :func:`resolve_task` (names, local BEIR folders,
            ``"NAME=FOLDER"``, or ``AbsTask`` objects).
        first_stage: ``None`` (Reranking tasks re-rank their own candidates), a TREC run file,
            a folder of MTEB predictions, a first-stage model MTEB runs (``SentenceTransformer``,
            ``ModelMeta`` or a registry name), or a ``{task name: first stage}`` mapping.
        top_k: First-stage candidates re-ranked per query.
        output_folder: The MTEB results cache (``results/...``); converted first-stage
            predictions go to its ``predictions/`` folder.
        model_name: ``organization/model`` to file the results under (see :func:`reranker_meta`).
        revision: The model revision to record.
        batch_size: Pairs per batch.
        overwrite: Re-run tasks whose results are already in the cache (MTEB's "always");
            False keeps them (MTEB's "only-missing").
        show_progress_bar: Show MTEB's progress bars.

    Returns:
        ``{task name: {metric: value}}`` with MTEB's metric names (``ndcg_at_10``,
        ``map_at_1000``, ``mrr_at_10``, ``main_score``, ...), averaged over the subsets of the
        task's first evaluation split.

    Raises:
        ValueError: On a Retrieval task without a first stage, a first stage that does not fit a
            task (see :func:`write_predictions`), or a ``model_name``, ``revision`` or task name that
            would lead out of ``output_folder`` (see :func:`check_path_name`); names and tasks are
            checked before the model is loaded.

    Example:
        ::

            from st_distill.evaluation.mteb import evaluate_mteb

            scores = evaluate_mteb(
                "runs/distillranknet-seed1", ["SciDocsRR", "SciFact"],
                first_stage={"SciDocsRR": None, "SciFact": "runs/scifact.bm25.trec"},
                top_k=100, output_folder="mteb-results", model_name="me/minilm-distillranknet",
            )
            print(scores["SciFact"]["ndcg_at_10"])
    """
    # names that become folders of the results cache are checked before any work
    if model_name is not None:
        check_path_name(model_name, "model_name")
    if revision is not None:
        check_path_name(revision, "revision")
    if isinstance(tasks, (str, AbsTask)):
        tasks = [tasks]
    resolved = [resolve_task(spec) for spec in tasks]
    for task in resolved:
        check_path_name(task.metadata.name, "task name")
    stages = _first_stages_per_task(first_stage, resolved)
    if isinstance(model, str):
        model = load_cross_encoder(model)
    output_folder = Path(output_folder)
    cache = mteb.ResultCache(output_folder)
    encode_kwargs: dict[str, Any] = {"batch_size": batch_size, "show_progress_bar": show_progress_bar}
    wrapper = CrossEncoderWrapper(model)
    base_meta = reranker_meta(model, name=model_name, revision=revision)
    scores: dict[str, dict[str, float]] = {}
    # every first stage is converted before any scoring, so that a run that does not fit fails fast
    identities = [
        None if stage is None else _prepare_first_stage(
            task, stage, top_k=top_k, work_folder=output_folder / "predictions", cache=cache, encode_kwargs=encode_kwargs
        )
        for task, stage in zip(resolved, stages)
    ]
    for task, identity in zip(resolved, identities):
        task_name = task.metadata.name
        wrapper.mteb_model_meta = base_meta if identity is None else base_meta.model_copy(update={"experiment_kwargs": identity})
        result = mteb.evaluate(
            wrapper, task, cache=cache, overwrite_strategy="always" if overwrite else "only-missing",
            encode_kwargs=dict(encode_kwargs), co2_tracker=False, show_progress_bar=show_progress_bar,
        )
        scores[task_name] = _summarise(result.task_results[0], task.eval_splits[0])
        logger.info("%s: %s = %.4f", task_name, task.metadata.main_score, scores[task_name]["main_score"])
    return scores
