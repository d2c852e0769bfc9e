#!/usr/bin/env bash
# The GPU checks of the speed presets in one call (issues 11, 26): `94` and both records'
# recipes (airbench94_muon, hiverge_speedrun) side by side (3 seeds, then seed 0 of all three
# with torch.compile), and one seed each of fast, 90, 95 and seed-fast. Each result records the
# GPU's peak memory beside the host's, and each run's utilisation of the measured bf16 rate. Run from the repository root of a source checkout, with or without cifarlab
# installed (PYTHONPATH=src is set):
#
#     bash benchmarks/gpu_check.sh [DATA_DIR]
#
# DATA_DIR holds cifar-10-batches-py; without it a stand-in of CIFAR-10's shape is written
# (benchmarks/stand_in_cifar.py: real times, meaningless accuracies). Results (JSON and the
# log) go to $OUT, else ./gpu-results. SEEDS (default 0,1,2) and PRESETS (default
# "fast 90 95 seed-fast") change what runs; the whole takes a few minutes on one H200.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-gpu-results}"
mkdir -p "$out"
data="${1:-}"
if [ -z "$data" ]; then
    data="$(mktemp -d)"
    python3 benchmarks/stand_in_cifar.py "$data"
fi
runs="$(mktemp -d)"
{
    python3 - <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else "NO GPU")
EOF
    bench() { python3 -m cifarlab bench --data-dir "$data" --runs-dir "$runs" "$@"; }
    bench 94 --compare-record --seed-list "${SEEDS:-0,1,2}" --out "$out/gpu-94-record.json"
    bench 94 --compare-record --seed-list 0 --out "$out/gpu-94-record-compiled.json" -- --compile
    # shellcheck disable=SC2086  # PRESETS is a list of names
    bench ${PRESETS:-fast 90 95 seed-fast} --seed-list 0 --out "$out/gpu-presets.json"
} 2>&1 | tee "$out/gpu-check.log"
