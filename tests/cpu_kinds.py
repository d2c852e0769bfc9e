"""The float32-only path of CPUs without native bf16 (AVX2 only: most laptops), emulated on
whatever x86 CPU this is: the tests marked `cpu_kinds` (training, resume, bench, predict, the
budget, the precision choices) run again with oneDNN capped at AVX2, ATen's kernels at AVX2 and
cifarlab told the CPU has no native bf16, so that no bf16 assumption creeps back in. On a CPU
that has no native bf16 anyway, the whole suite already ran that path, and this says so.

    python tests/cpu_kinds.py
"""

import os
import subprocess
import sys

EMULATED = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
            "CIFARLAB_NATIVE_BF16": "0"}


def main() -> int:
    from cifarlab.runtime import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        print("cpu_kinds: this CPU has no native bf16; the suite ran the float32 path already")
        return 0
    env = {**os.environ, **EMULATED}
    print("cpu_kinds: the float32 path, emulated: " + " ".join(f"{k}={v}" for k, v in
                                                              EMULATED.items()), flush=True)
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "-m", "cpu_kinds",
                            "-p", "no:cacheprovider"], env=env)


if __name__ == "__main__":
    sys.exit(main())
