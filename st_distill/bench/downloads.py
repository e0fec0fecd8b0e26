"""What a bench config would download: hub subsets, ``ir_datasets`` files and hub models, with the
published sizes recorded in :mod:`st_distill.data.sources` (printed by ``st-distill bench --dry-run``)."""

from __future__ import annotations

from pathlib import Path

from st_distill.bench.config import HF_PREFIX, BenchConfig, CollectionConfig
from st_distill.data.sources import HUB_DOWNLOADS, IR_DATASETS_DOWNLOADS, Download
from st_distill.models import resolve_model

__all__ = ["describe_downloads"]


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def _collection_files(c: CollectionConfig) -> tuple[Download, ...] | None:
    always, scoreddocs = IR_DATASETS_DOWNLOADS.get(c.ir_datasets, (None, ()))
    if always is None:
        return None
    return always + (scoreddocs if c.run is None and c.first_stage is None else ())


def describe_downloads(config: BenchConfig) -> list[str]:
    """Lines listing each download of ``config`` once (a file two collections share counts once), its size, and the total.

    Sizes are the published ones (the figures' sources are listed at the end); an id or subset
    whose size is not recorded is listed as such, and models from the hub are named without a size.
    """
    lines, seen, sources, unknown = [], {}, set(), []
    collections = [(f"train source {c.name}", c) for c in config.train_sources]
    collections += [(f"eval suite {name}", c) for name, c in config.eval.suites.items()]
    for label, c in collections:
        if c.ir_datasets is None:
            continue
        files = _collection_files(c)
        if files is None:
            unknown.append(f"ir_datasets {c.ir_datasets} ({label})")
            continue
        new = [f for f in files if f.name not in seen]
        seen.update({f.name: f for f in new})
        sources.update(f.source for f in files)
        listed = ", ".join(f"{f.name} {_size(f.size)}" for f in new) or "nothing new (files listed above)"
        lines.append(f"    ir_datasets {c.ir_datasets} ({label}): {listed}")
    scores = config.teacher.scores_file
    if isinstance(scores, str) and scores.startswith(HF_PREFIX):
        org, name, subset = scores[len(HF_PREFIX):].split("/")
        hub = HUB_DOWNLOADS.get((f"{org}/{name}", subset))
        if hub is None:
            unknown.append(scores)
        else:
            seen[scores] = hub
            sources.add(hub.source)
            lines.append(f"    {scores} (teacher scores): {hub.name} {_size(hub.size)}")
    total = sum(f.size for f in seen.values())
    out = [f"  downloads: {_size(total)} of data" + (f" + {len(unknown)} of unrecorded size" if unknown else ""), *lines]
    out += [f"    size not recorded: {u}" for u in unknown]
    models = dict.fromkeys(m for m in _model_specs(config) if resolve_model(m, Path(config.path).parent) == m)
    if models:
        out.append(f"    hub models (size not recorded): {', '.join(models)}")
    out += [f"    sizes from: {s}" for s in sorted(sources)]
    return out


def _model_specs(config: BenchConfig) -> list[str]:
    t = config.teacher
    return [b.model for b in config.backbones] + [m.model for m in t.models] + ([t.train_backbone] if t.source == "train" and t.train_backbone else [])
