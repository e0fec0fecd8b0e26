#!/usr/bin/env bash
# The GPU one-shot of issue 13 (see check.py): bf16 re-rank throughput against CrossEncoder.predict,
# peak GPU memory of cached vs uncached 64-document lists on a 110M-parameter BERT, a two-cell grid.
# About 3-5 minutes on one H200 (budget: 10). Run from the repository root:
#
#   benchmarks/gpu/check.sh [OUT]                # on a GPU; results in OUT (default /tmp/st-distill-gpu-check)
#   benchmarks/gpu/check.sh [OUT] --cpu-smoke    # on a CPU at toy sizes: checks the script, measures nothing
#
# It prints a markdown table for benchmarks/RESULTS.md and writes OUT/check.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-/tmp/st-distill-gpu-check}"
shift || true
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
python -c "import torch, transformers, sentence_transformers as st; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| transformers', transformers.__version__, '| sentence-transformers', st.__version__)"
timeout 600 python benchmarks/gpu/check.py --out "$OUT" "$@"
