"""Score heads for cross-encoder students made from bi-encoder checkpoints.

:class:`SegmentCosine` is a sentence-transformers module: after a ``Transformer`` that encodes the
(query, document) pair jointly, it averages the token embeddings of each segment (the query's
``[CLS] q [SEP]``, the document's ``d [SEP]``, told apart by ``token_type_ids``) and outputs the
cosine similarity of the two means. A ``Dense(1, 1)`` after it turns the cosine into the score.

Why: a bi-encoder checkpoint was trained so that the cosine of mean-pooled embeddings ranks
documents. Encoded jointly, each segment still attends mostly to itself at first, so this head makes
the untrained student a ranker already (on the quickstart's TREC DL 2021 dev split, the packaged
all-MiniLM-L6-v2 re-ranks BM25's top-20 to nDCG@10 0.747 before any training, against 0.650 for
BM25 and 0.463 for a new mean-pooling dense head; benchmarks/RESULTS.md), while every layer sees
both texts, as in any cross-encoder, for training to build on.

Loading a saved student: the module lives outside ``sentence_transformers``, so
``CrossEncoder(path, trust_remote_code=True)`` (or :func:`st_distill.training.load_student`,
which trusts only st-distill's own modules).
"""

from __future__ import annotations

from typing import Any

import torch
from sentence_transformers.base.modules import Module

__all__ = ["SegmentCosine"]


class SegmentCosine(Module):
    """Cosine similarity of the mean token embeddings of a pair's two segments.

    Reads ``token_embeddings``, ``attention_mask`` and ``token_type_ids`` (0 for the first text and
    its special tokens, 1 for the second: BERT-style pair encoding); writes a ``[batch, 1]`` float32
    tensor under ``module_output_name``. Computed in float32 under autocast.

    Args:
        module_output_name: Key of the output in the features dictionary.

    Raises:
        ValueError: In ``forward``, when the features have no ``token_type_ids`` (tokenizers that do
            not mark the two segments, e.g. RoBERTa's or ModernBERT's).
    """

    config_keys = ["module_output_name"]

    def __init__(self, module_output_name: str = "segment_cosine") -> None:
        super().__init__()
        self.module_output_name = module_output_name

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        segments = features.get("token_type_ids")
        if segments is None:
            raise ValueError("SegmentCosine needs token_type_ids to tell the query from the document; "
                             "this tokenizer gives none (use head = 'mean' or 'cls' for this backbone)")
        with torch.autocast(device_type=features["token_embeddings"].device.type, enabled=False):
            tokens = features["token_embeddings"].float()
            mask = features["attention_mask"].to(tokens.dtype)
            second = mask * segments.to(tokens.dtype)
            first = mask - second
            means = [(tokens * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp_min(1.0) for m in (first, second)]
            features[self.module_output_name] = torch.nn.functional.cosine_similarity(*means, dim=-1, eps=1e-8).unsqueeze(1)
        return features

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        self.save_config(output_path)
