#!/usr/bin/env bash
# The GPU checks of the speed presets, in one call of a few minutes on one H100 (issues 11, 26,
# 33): one seed each of `94` and both records' recipes (airbench94_muon, hiverge_speedrun) side
# by side, of fast, 90, 95 and seed-fast, and of `cifarlab train --time 10s` and `--time 60s`.
# Each result records the GPU's peak memory beside the host's, and each run's utilisation of
# the matrix-product rate in its precision. A run that fails is reported and the others go on.
# Run from the repository root of a source checkout, with or without cifarlab installed
# (PYTHONPATH=src is set):
#
#     bash benchmarks/gpu_check.sh [DATA_DIR]
#
# DATA_DIR holds cifar-10-batches-py; without it a stand-in of CIFAR-10's shape is written
# (benchmarks/stand_in_cifar.py: real times, meaningless accuracies). Results (JSON and the
# log) go to $OUT, else ./gpu-results. SEEDS (default 0) and PRESETS (default "fast 90 95
# seed-fast") change what runs; benchmarks/gpu_check_compiled.sh is the torch.compile sitting.
set -uo pipefail
# shellcheck source=benchmarks/gpu_env.sh
source "$(dirname "$0")/gpu_env.sh" "${1:-}"
{
    python3 - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else "NO GPU")
PY
    bench() {
        python3 -m cifarlab bench --data-dir "$data" --runs-dir "$runs" "$@" \
            || echo "gpu_check: FAILED: cifarlab bench $*"
    }
    seeds="${SEEDS:-0}"
    bench 94 --compare-record --seed-list "$seeds" --out "$out/gpu-94-record.json"
    # shellcheck disable=SC2086  # PRESETS is a list of names
    bench ${PRESETS:-fast 90 95 seed-fast} --seed-list "$seeds" --out "$out/gpu-presets.json"
    bench --time 10s 60s --seed-list "$seeds" --out "$out/gpu-budgets.json"
} 2>&1 | tee "$out/gpu-check.log"
