#!/usr/bin/env bash
# The second GPU sitting: `94` and both records' recipes under torch.compile, one seed, side by
# side (the compile time is part of each wall time, as a user pays it). As gpu_check.sh:
#
#     bash benchmarks/gpu_check_compiled.sh [DATA_DIR]
set -uo pipefail
# shellcheck source=benchmarks/gpu_env.sh
source "$(dirname "$0")/gpu_env.sh" "${1:-}"
python3 -m cifarlab bench 94 --compare-record --seed-list "${SEEDS:-0}" --data-dir "$data" \
    --runs-dir "$runs" --out "$out/gpu-94-record-compiled.json" -- --compile 2>&1 \
    | tee "$out/gpu-check-compiled.log"
