"""MTEB integration: a local SciFact task, a BM25 first stage, parity of MTEB's nDCG@10, ModelMeta source.

Everything runs offline: the task reads ``../shared/data/scifact`` (20 test queries, depth 20),
the first stage is a bm25s run made here, the re-ranker is the tiny random CrossEncoder.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import shlex
from pathlib import Path

import pytest

mteb = pytest.importorskip("mteb")

from st_distill import cli  # noqa: E402
from st_distill.data.formats import BeirData, load_beir, write_trec_run  # noqa: E402
from st_distill.evaluation import mteb as st_mteb  # noqa: E402
from st_distill.evaluation import submission  # noqa: E402

N_QUERIES = 20
DEPTH = 20
TASK = "SciFactLocal"


# --------------------------------------------------------------------------- fixtures and references


@pytest.fixture(scope="module", autouse=True)
def _one_thread(torch_one_thread):
    """The tiny model is fastest on one thread on the shared test machine (see conftest)."""


@pytest.fixture(scope="module")
def scifact(shared_data) -> BeirData:
    return load_beir(shared_data / "scifact", "test")


@pytest.fixture(scope="module")
def query_ids(scifact) -> list[str]:
    return sorted((q for q in scifact.qrels if q in scifact.queries), key=int)[:N_QUERIES]


@pytest.fixture(scope="module")
def bm25_run(scifact, query_ids, shared_data, tmp_path_factory):
    """A BM25 top-30 over the whole corpus for the task's queries plus 5 training queries, as a TREC file."""
    from st_distill.evaluation.retrieve import bm25_retrieve

    train = sorted(load_beir(shared_data / "scifact", "train").qrels, key=int)[:5]
    run = bm25_retrieve(scifact.corpus, {q: scifact.queries[q] for q in query_ids + train}, top_k=30)
    path = tmp_path_factory.mktemp("runs") / "scifact.bm25.trec"
    write_trec_run(run, path, tag="bm25s")
    return path


@pytest.fixture(scope="module")
def task(shared_data, query_ids):
    return st_mteb.local_retrieval_task(shared_data / "scifact", name=TASK, like="SciFact", query_ids=query_ids)


@pytest.fixture(scope="module")
def model(tiny_model_path):
    from sentence_transformers.cross_encoder import CrossEncoder

    return CrossEncoder(tiny_model_path, num_labels=1, max_length=64, device="cpu")


@pytest.fixture(scope="module")
def candidates(bm25_run, query_ids) -> dict[str, list[str]]:
    """Each task query's BM25 top-DEPTH, in trec_eval order."""
    run = read_run(bm25_run)
    return {q: top_k(run[q], DEPTH) for q in query_ids}


@pytest.fixture(scope="module")
def reference_ndcg(model, scifact, candidates) -> float:
    """nDCG@10 of the candidates re-ranked by CrossEncoder.predict, computed by hand."""
    return naive_ndcg_at_10(rerank_by_hand(model, scifact, candidates), scifact.qrels)


def top_k(docs: dict[str, float], k: int) -> list[str]:
    """trec_eval order written out by hand: score descending, then document id descending."""
    by_id = sorted(docs.items(), key=lambda item: item[0], reverse=True)
    return [d for d, _ in sorted(by_id, key=lambda item: item[1], reverse=True)][:k]  # stable: ties keep id order


def naive_ndcg_at_10(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> float:
    """Mean nDCG@10 with linear gains over the run's queries, as a plain loop."""
    values = []
    for qid, docs in run.items():
        gains = [qrels[qid].get(d, 0) for d in top_k(docs, 10)]
        dcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(gains))
        ideal = sorted((g for g in qrels[qid].values() if g > 0), reverse=True)[:10]
        idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
        values.append(dcg / idcg if idcg else 0.0)
    return sum(values) / len(values)


def rerank_by_hand(model, data: BeirData, candidates: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Scores every (query, candidate) pair with CrossEncoder.predict, one query at a time."""
    return {
        qid: dict(zip(docs, map(float, model.predict([(data.queries[qid], data.corpus[d]) for d in docs]))))
        for qid, docs in candidates.items()
    }


def read_run(path) -> dict[str, dict[str, float]]:
    from st_distill.data.formats import read_trec_run

    return read_trec_run(path)


# --------------------------------------------------------------------------- local task


def test_local_task_is_an_offline_mteb_retrieval_task(task, scifact, query_ids):
    from mteb.abstasks.retrieval import AbsTaskRetrieval

    assert isinstance(task, AbsTaskRetrieval)
    assert task.metadata.name == TASK
    assert task.metadata.main_score == "ndcg_at_10"  # copied from MTEB's SciFact
    assert task.metadata.revision.startswith("local-")
    task.load_data()
    split = task.dataset["default"]["test"]
    assert list(split["queries"]["id"]) == query_ids
    assert len(split["corpus"]) == len(scifact.corpus) == 5183
    assert split["relevant_docs"] == {q: scifact.qrels[q] for q in query_ids}
    # another query subset is another dataset revision in MTEB's cache
    other = st_mteb.local_retrieval_task(scifact, name=TASK, query_ids=query_ids[:5])
    assert other.metadata.revision != task.metadata.revision
    with pytest.raises(ValueError, match="no text or no judgement"):
        st_mteb.local_retrieval_task(scifact, name=TASK, query_ids=["not-a-query"])
    with pytest.raises(ValueError, match="not an MTEB task"):
        st_mteb.local_retrieval_task(scifact, like="SciFactt")


# --------------------------------------------------------------------------- TREC run first stage


def test_predictions_file_keeps_each_querys_top_k_in_trec_eval_order(task, bm25_run, tmp_path):
    run = read_run(bm25_run)
    path = st_mteb.write_predictions(run, task, tmp_path, top_k=DEPTH, name="bm25", revision="r1")
    assert path.name == f"{TASK}_predictions.json"
    predictions = json.loads(path.read_text())
    assert predictions["mteb_model_meta"] == {"model_name": "bm25", "revision": "r1", "top_k": DEPTH, "kind": "trec-run"}
    split = predictions["default"]["test"]
    assert set(split) == set(task.dataset["default"]["test"]["queries"]["id"])  # the 5 training queries are dropped
    for qid, docs in split.items():
        assert list(docs) == top_k(run[qid], DEPTH)
        assert all(docs[d] == run[qid][d] for d in docs)


@pytest.mark.slow
def test_mteb_ndcg_equals_st_distill_eval_on_the_same_run_and_model(
    task, bm25_run, model, scifact, query_ids, reference_ndcg, shared_data, tmp_path
):
    from st_distill.evaluation.rerank import rerank_and_evaluate

    out = tmp_path / "mteb-results"
    scores = st_mteb.evaluate_mteb(model, [task], first_stage=bm25_run, top_k=DEPTH, output_folder=out)
    ndcg = scores[TASK]["ndcg_at_10"]

    report = rerank_and_evaluate(model, bm25_run, shared_data / "scifact", depth=DEPTH, measures=["nDCG@10"])
    assert report["reranked"]["queries"] == {"evaluated": N_QUERIES, "unjudged": 5, "judged_not_in_run": 300 - N_QUERIES}
    assert ndcg == pytest.approx(report["reranked"]["aggregate"]["nDCG@10"], abs=1e-4)
    assert ndcg == pytest.approx(reference_ndcg, abs=1e-4)
    # re-ranking happened: BM25's own order on the same candidates scores differently
    assert report["first_stage"]["aggregate"]["nDCG@10"] != pytest.approx(ndcg, abs=1e-3)

    # MTEB's results layout, first stage recorded in the scores and in the experiment folder
    meta = st_mteb.reranker_meta(model)
    revision = st_mteb._file_revision(bm25_run)
    stage = {"first_stage": bm25_run.stem, "first_stage_revision": revision, "top_k": DEPTH}
    result_path = mteb.ResultCache(out).get_task_result_path(TASK, meta.model_copy(update={"experiment_kwargs": stage}))
    assert result_path.is_file()
    assert result_path.relative_to(out).parts[:2] == ("results", "local__" + meta.name.split("/")[1])
    assert result_path.parent.parent.name == "experiments"
    entry = json.loads(result_path.read_text())["scores"]["test"][0]
    assert entry["ndcg_at_10"] == ndcg
    assert entry["previous_results_model_meta"] == {
        "model_name": bm25_run.stem, "revision": revision, "top_k": DEPTH, "kind": "trec-run",
    }


class _LocalReranking(st_mteb._LocalRetrievalTask):
    """Test helper: an MTEB Reranking task whose own candidates are a run's top-k."""

    candidates: dict[str, list[str]]

    def load_data(self, num_proc=None, **kwargs):
        super().load_data(num_proc, **kwargs)
        self.dataset["default"]["test"]["top_ranked"] = dict(self.candidates)


def test_reranking_task_reranks_its_own_candidates_into_the_main_results_folder(
    task, model, scifact, query_ids, candidates, reference_ndcg, tmp_path
):
    metadata = task.metadata.model_copy(update={"name": "SciFactLocalReranking", "type": "Reranking"})
    reranking = type("SciFactLocalReranking", (_LocalReranking,), {
        "metadata": metadata, "_data": scifact, "_query_ids": query_ids, "candidates": candidates,
    })()
    out = tmp_path / "mteb-results"
    scores = st_mteb.evaluate_mteb(model, [reranking], output_folder=out)

    assert scores["SciFactLocalReranking"]["ndcg_at_10"] == pytest.approx(reference_ndcg, abs=1e-4)
    meta = st_mteb.reranker_meta(model)
    path = out / "results" / meta.model_name_as_path() / meta.revision / "SciFactLocalReranking.json"
    assert path.is_file()  # no experiments/ folder: these are the results MTEB's leaderboard takes
    assert "previous_results_model_meta" not in json.loads(path.read_text())["scores"]["test"][0]


# --------------------------------------------------------------------------- first stage run by MTEB


@pytest.mark.slow
def test_first_stage_model_run_by_mteb_then_reranked(tiny_model_path, model, scifact, query_ids, bm25_run, tmp_path):
    from sentence_transformers import SentenceTransformer, models

    # a small corpus (the run's candidates and the judged documents) keeps encoding fast
    run = read_run(bm25_run)
    keep = {d for q in query_ids for d in run[q]} | {d for q in query_ids for d in scifact.qrels[q]}
    small = BeirData(corpus={d: t for d, t in scifact.corpus.items() if d in keep}, queries=scifact.queries, qrels=scifact.qrels)
    small_task = st_mteb.local_retrieval_task(small, name="SciFactSmall", query_ids=query_ids)
    encoder = SentenceTransformer(
        modules=[models.Transformer(tiny_model_path, max_seq_length=64), models.Pooling(32)], device="cpu"
    )
    out = tmp_path / "mteb-results"
    scores = st_mteb.evaluate_mteb(model, [small_task], first_stage=encoder, top_k=10, output_folder=out)

    name, revision = st_mteb._model_identity(encoder)
    predictions_path = out / "predictions" / f"{name.replace('/', '__')}-{revision}" / "SciFactSmall_predictions.json"
    predictions = json.loads(predictions_path.read_text())
    assert predictions["mteb_model_meta"] == {"model_name": name, "revision": revision}
    first = predictions["default"]["test"]
    candidates = {q: sorted(first[q], key=first[q].get, reverse=True)[:10] for q in query_ids}
    expected = naive_ndcg_at_10(rerank_by_hand(model, small, candidates), {q: scifact.qrels[q] for q in query_ids})
    assert scores["SciFactSmall"]["ndcg_at_10"] == pytest.approx(expected, abs=1e-4)
    assert list(out.glob("results/*/*/SciFactSmall.json"))  # the first stage's own results, in the same cache


# --------------------------------------------------------------------------- clear messages


def test_run_for_another_task_gets_a_clear_message(task, model, shared_data, tmp_path):
    other = shared_data / "trec-dl-2019" / "run.bm25.top100.trec"
    with pytest.raises(ValueError, match=rf"run.bm25.top100.trec has no query of task {TASK} .*another task"):
        st_mteb.evaluate_mteb(model, [task], first_stage=other, output_folder=tmp_path)


def test_cli_reports_a_run_for_another_task(tiny_model_path, shared_data, tmp_path, capsys):
    code = cli.main([
        "mteb", "evaluate", tiny_model_path, "--tasks", f"SciFact={shared_data / 'scifact'}",
        "--first-stage", str(shared_data / "trec-dl-2019" / "run.bm25.top100.trec"), "--output-folder", str(tmp_path),
    ])
    assert code == 2
    assert "st-distill mteb: error:" in capsys.readouterr().err
    assert not list(tmp_path.glob("results/**/*.json"))


def test_missing_or_unusable_first_stages_are_refused(task, model, bm25_run, tmp_path):
    with pytest.raises(ValueError, match="is a Retrieval task: a cross-encoder needs a first stage"):
        st_mteb.evaluate_mteb(model, [task], output_folder=tmp_path)
    with pytest.raises(ValueError, match=f"no first stage given for task {TASK} \\(first stages given for: Other\\)"):
        st_mteb.evaluate_mteb(model, [task], first_stage={"Other": bm25_run}, output_folder=tmp_path)
    with pytest.raises(ValueError, match="first stages given for tasks that are not evaluated: Other"):
        st_mteb.evaluate_mteb(model, [task], first_stage={TASK: bm25_run, "Other": bm25_run}, output_folder=tmp_path)
    with pytest.raises(ValueError, match="not an existing run file"):
        st_mteb.evaluate_mteb(model, [task], first_stage="no/such-run.trec", output_folder=tmp_path)
    task.load_data()
    bad = tmp_path / "bad.trec"
    bad.write_text(f"{task.dataset['default']['test']['queries']['id'][0]} Q0 no-such-doc 1 3.5 bm25\n")
    with pytest.raises(ValueError, match="1 document\\(s\\) are not in the corpus of task SciFactLocal"):
        st_mteb.evaluate_mteb(model, [task], first_stage=bad, output_folder=tmp_path)
    with pytest.raises(ValueError, match="neither a local BEIR folder nor an MTEB task"):
        st_mteb.resolve_task("SciFactt")


# --------------------------------------------------------------------------- submission material


def tiny_bert_parameters(vocab: int = 30522, hidden: int = 32, layers: int = 2, intermediate: int = 64) -> int:
    """Parameter count of the tiny BertForSequenceClassification, from its configuration by hand."""
    embeddings = vocab * hidden + 512 * hidden + 2 * hidden + 2 * hidden
    layer = 4 * (hidden * hidden + hidden) + 2 * hidden + (hidden * intermediate + intermediate)
    layer += intermediate * hidden + hidden + 2 * hidden
    return embeddings + layers * layer + (hidden * hidden + hidden) + (hidden + 1)


def import_file(path, module_name: str):
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_meta_source_imports_and_validates(model, tmp_path):
    from mteb.models.model_meta import ModelMeta
    from mteb.models.sentence_transformer_wrapper import CrossEncoderWrapper

    cell = tmp_path / "cell.json"
    cell.write_text(json.dumps({  # a bench cell.json, plus the keys the bench config knows
        "cell": {"phase": "main", "backbone": "ettin-17m", "objective": "distillranknet", "seed": 1},
        "settings": {"backbone": {"model": "jhu-clsp/ettin-encoder-17m", "layers": None}, "objective": "distillranknet"},
        "teacher": "cross-encoder/ms-marco-MiniLM-L6-v2", "train_dataset": "msmarco", "license": "apache-2.0",
    }))
    meta = submission.model_meta(model, name="st-distill-tests/tiny-distillranknet", revision="0123abcd", cell_metadata=cell)
    path = submission.write_model_meta_source(meta, tmp_path / "st_distill_tiny.py")
    module = import_file(path, "st_distill_tiny")

    loaded = module.tiny_distillranknet
    assert isinstance(loaded, ModelMeta)
    assert loaded == meta
    assert ModelMeta.model_validate(loaded.model_dump()) == meta
    assert loaded.loader is CrossEncoderWrapper and loaded.is_cross_encoder
    assert loaded.n_parameters == tiny_bert_parameters()
    assert loaded.n_embedding_parameters == 30522 * 32
    assert loaded.memory_usage_mb == round(tiny_bert_parameters() * 4 / 2**20)
    assert loaded.max_tokens == 64
    assert loaded.training_datasets == {"MSMARCO"}
    assert loaded.adapted_from == "jhu-clsp/ettin-encoder-17m"
    assert (loaded.license, loaded.revision, loaded.reference) == (
        "apache-2.0", "0123abcd", "https://huggingface.co/st-distill-tests/tiny-distillranknet",
    )
    with pytest.raises(ValueError, match="license"):
        submission.model_meta(model, name="st-distill-tests/tiny", license="not-a-licence")


def test_submission_names_keep_deprecated_aliases_in_mteb_module():
    for name in submission.__all__:
        with pytest.warns(DeprecationWarning, match=f"moved to st_distill.evaluation.submission.{name}"):
            assert getattr(st_mteb, name) is getattr(submission, name)
    with pytest.raises(AttributeError):
        st_mteb.not_a_name  # noqa: B018


# --------------------------------------------------------------------------- names that become paths (#20, 10)


@pytest.fixture
def toy_task(tmp_path) -> tuple[Path, Path]:
    """A three-query BEIR folder and a run over it: MTEB evaluates it in a second."""
    folder = tmp_path / "inputs" / "toy"
    (folder / "qrels").mkdir(parents=True)
    docs = {f"d{i}": f"document number {i} about topic {i % 3}" for i in range(6)}
    queries = {f"q{i}": f"topic {i}" for i in range(3)}
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in docs.items()))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(3)))
    run = tmp_path / "inputs" / "toy.trec"
    run.write_text("".join(f"{q} Q0 {d} {r} {10 - r} bm25\n" for q in queries for r, d in enumerate(docs, 1)))
    return folder, run


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--revision", "../../../escaped", "revision '../../../escaped' would lead out of the output folder"),
     ("--model-name", "../../escaped", "model_name '../../escaped' would lead out"),
     ("--tasks", "../../../escaped=FOLDER", "task name '../../../escaped' would lead out")],
)
def test_names_leading_out_of_the_output_folder_are_refused(toy_task, tiny_model_path, tmp_path, capsys, option, value, message):
    folder, run = toy_task
    output = tmp_path / "a" / "b" / "results"
    argv = ["mteb", "evaluate", tiny_model_path, "--tasks", f"Toy={folder}", "--first-stage", str(run), "--top-k", "5",
            "--output-folder", str(output)]
    if option == "--tasks":
        argv[argv.index("--tasks") + 1] = value.replace("FOLDER", str(folder))
    else:
        argv += [option, value]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs"]  # nothing written, inside or outside


def test_library_refuses_such_names_before_loading_the_model(toy_task):
    folder, run = toy_task
    with pytest.raises(ValueError, match="revision '../x' would lead out"):
        st_mteb.evaluate_mteb("no-such/model", [f"Toy={folder}"], first_stage=str(run), revision="../x")
    with pytest.raises(ValueError, match="task name 'a/../../x' would lead out"):
        st_mteb.local_retrieval_task(folder, name="a/../../x")


def test_cli_writes_an_importable_model_meta(tiny_model_path, tmp_path, capsys):
    output = tmp_path / "meta_source.py"
    code = cli.main([
        "mteb", "meta", tiny_model_path, "--name", "st-distill-tests/tiny-bce", "--license", "mit",
        "--release-date", "2026-11-20", "--output", str(output),
    ])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["written"] == str(output)
    loaded = import_file(output, "meta_source").tiny_bce
    assert (loaded.name, loaded.license, loaded.release_date) == ("st-distill-tests/tiny-bce", "mit", "2026-11-20")
    assert loaded.model_type == ["cross-encoder"]


# --------------------------------------------------------------------------- README


def mteb_section() -> str:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## MTEB\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, "README.md has no '## MTEB' section"
    return match.group(1)


@pytest.mark.slow
def test_readme_mteb_example_runs(tiny_model_path, scifact, tmp_path, monkeypatch):
    """The README's example as written, with the tiny model, a BM25 run made here and a depth of 1."""
    from st_distill.evaluation.retrieve import bm25_retrieve

    queries = {q: scifact.queries[q] for q in scifact.qrels if q in scifact.queries}
    run_path = tmp_path / "scifact.bm25.trec"
    write_trec_run(bm25_retrieve(scifact.corpus, queries, top_k=1), run_path)

    (code,) = re.findall(r"```python\n(.*?)```", mteb_section(), flags=re.S)
    for old, new in [
        ('"runs/my-reranker"', repr(tiny_model_path)),
        ('"runs/scifact.bm25.trec"', repr(str(run_path))),
        ("top_k=100", "top_k=1"),
        ('"mteb-results"', repr(str(tmp_path / "mteb-results"))),
    ]:
        assert code.count(old) == 1, old
        code = code.replace(old, new)
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # ../shared/data is relative to the project root
    namespace: dict = {}
    exec(compile(code, "README.md:MTEB", "exec"), namespace)
    ndcg = namespace["scores"]["SciFact"]["ndcg_at_10"]
    assert 0.0 < ndcg < 1.0
    assert list((tmp_path / "mteb-results" / "results" / "me__my-reranker").glob("*/experiments/*/SciFact.json"))

    # the first command of the README's bash block does the same
    command = readme_commands()[0]
    substitutions = {"runs/my-reranker": tiny_model_path, "runs/scifact.bm25.trec": str(run_path), "100": "1"}
    argv = [substitutions.get(word, word) for word in command[1:]]
    argv += ["--output-folder", str(tmp_path / "cli-results"), "--scores", str(tmp_path / "scores.json")]
    assert cli.main(argv) == 0
    assert json.loads((tmp_path / "scores.json").read_text())["SciFact"]["ndcg_at_10"] == ndcg


def readme_commands() -> list[list[str]]:
    (block,) = re.findall(r"```bash\n(.*?)```", mteb_section(), flags=re.S)
    return [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def test_readme_mteb_commands_parse():
    from st_distill.cli import build_parser

    commands = readme_commands()
    assert len(commands) == 2
    for command in commands:
        assert command[:3] == ["st-distill", "mteb", "evaluate"]
        args = build_parser().parse_args(command[1:])
        assert args.model_name == "me/my-reranker" and args.tasks


def test_bench_mteb_suite_gives_mteb_ndcg_equal_to_st_distill_eval(task, bm25_run, model, shared_data, tmp_path):
    """The bench's [eval.mteb] suite goes through evaluate_mteb: same nDCG@10 as st-distill eval."""
    from st_distill.bench.config import MtebSuite
    from st_distill.bench.phases.evaluate import evaluate_mteb_suite
    from st_distill.evaluation.rerank import rerank_and_evaluate

    suite = MtebSuite(tasks=(task,), first_stage=str(bm25_run), top_k=DEPTH)
    scores = evaluate_mteb_suite(model, suite, tmp_path / "mteb")
    report = rerank_and_evaluate(model, bm25_run, shared_data / "scifact", depth=DEPTH, measures=["nDCG@10"])
    assert scores[TASK]["ndcg_at_10"] == pytest.approx(report["reranked"]["aggregate"]["nDCG@10"], abs=1e-4)
    assert (tmp_path / "mteb").is_dir()
