# What both GPU scripts set up (sourced by gpu_check.sh and gpu_check_compiled.sh, with the
# data folder as $1): the source checkout on PYTHONPATH, $out for results, $data (a stand-in of
# CIFAR-10's shape when none is given) and $runs for the run folders.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-gpu-results}"
mkdir -p "$out"
data="${1:-}"
if [ -z "$data" ]; then
    data="$(mktemp -d)"
    python3 benchmarks/stand_in_cifar.py "$data" || exit 1
fi
runs="$(mktemp -d)"
