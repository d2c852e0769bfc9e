"""Device, precision and seeding choices shared by training and evaluation."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cifarlab.errors import CifarlabError


def resolve_device(name: str = "auto") -> torch.device:
    """auto: CUDA, then Apple's MPS, then the CPU. An explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CifarlabError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps"
                            ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CifarlabError("--device cuda asked for, but torch sees no CUDA GPU; use --device "
                            "auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CifarlabError("--device mps asked for, but MPS is not available; use --device cpu")
    return device


def use_channels_last(setting: bool | None, device: torch.device) -> bool:
    """Channels-last convolutions are faster on CUDA and on x86 CPUs (docs/benchmarks.md);
    MPS gains nothing from it."""
    return setting if setting is not None else device.type in ("cuda", "cpu")


def compile_blocker(device: torch.device) -> str | None:
    """Why torch.compile cannot run on `device`, or None when it can. On the CPU, inductor
    builds its kernels with a C++ compiler, which a user's machine may lack."""
    if device.type != "cpu":
        return None
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
        get_cpp_compiler()
    except Exception:  # a private API: whatever fails there, compiling would fail too
        return "torch.compile on the CPU needs a C++ compiler (g++ or clang++, or set CXX)"
    return None


# Images per forward pass in evaluation: on the CPU 250, whose activations stay in cache
# (docs/benchmarks.md, "Where the time went"); elsewhere 1,000.
CPU_EVAL_BATCH = 250
EVAL_BATCH = 1000


def eval_batch_size(setting: int | None, device: torch.device) -> int:
    """The setting, else the device's default evaluation batch."""
    return setting if setting is not None else (CPU_EVAL_BATCH if device.type == "cpu"
                                                else EVAL_BATCH)


# oneDNN's instruction sets with bf16 arithmetic: capped below them (ONEDNN_MAX_CPU_ISA, e.g.
# AVX2, to try the path of CPUs without), bf16 is emulated and slower than float32.
_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10", "ALL",
               "DEFAULT")
NATIVE_BF16_ENV = "CIFARLAB_NATIVE_BF16"  # 0: treat the CPU as one without native bf16


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX or AVX512-BF16), where bf16 convolutions
    run about twice as fast as float32; elsewhere bf16 is emulated, far slower than float32.
    CIFARLAB_NATIVE_BF16=0 or 1 overrides the check; ONEDNN_MAX_CPU_ISA capped below bf16 (as
    in `ONEDNN_MAX_CPU_ISA=AVX2`) counts as no native bf16."""
    override = os.environ.get(NATIVE_BF16_ENV, "").strip()
    if override in ("0", "1"):
        return override == "1"
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if isa and not isa.startswith(_BF16_ISAS):
        return False
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)  # private helpers, absent in some torch builds
        try:
            if fn is not None and fn():
                return True
        except RuntimeError:
            pass
    return False


def cuda_has_native_bf16(device: torch.device) -> bool:
    """Whether this GPU computes bf16 in hardware: compute capability 8.0 (Ampere) or more.
    torch.cuda.is_bf16_supported() also counts emulation, and cuDNN has no bf16 convolutions
    on older GPUs (T4, V100)."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for this setting and device, or None for full precision.
    auto: on CUDA bf16 from Ampere on, fp16 (with a gradient scaler) on older GPUs; bf16 on
    CPUs with native bf16; else none (float32)."""
    if amp == "off":
        return None
    if amp == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if cuda_has_native_bf16(device) else torch.float16
        if device.type == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def compute_dtype(amp: str, device: torch.device) -> torch.dtype:
    """The dtype a run's matrix products and convolutions compute in: its autocast dtype, else
    float32."""
    return amp_dtype(amp, device) or torch.float32


def precision_name(dtype: torch.dtype | None) -> str:
    """A compute dtype as logs and results name it: bfloat16, float16, float32 (None)."""
    return str(dtype or torch.float32).removeprefix("torch.")


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _glibc(name: str) -> Callable[..., int] | None:
    """glibc's function `name` on Linux, or None elsewhere (e.g. macOS or musl)."""
    if platform.system() != "Linux":
        return None
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """On glibc (Linux), keep freed memory for reuse instead of handing it back to the system.
    glibc gives large blocks their own mappings and unmaps them on free, so every training step
    on the CPU would fault its activations in again, page by page (docs/benchmarks.md, "Where
    the time went"). Process-wide and lasting: for processes that train or evaluate. Returns
    whether it took (False elsewhere, e.g. macOS or musl)."""
    mallopt = _glibc("mallopt")
    m_trim_threshold = -1  # glibc's <malloc.h>
    m_mmap_max = -4
    return (mallopt is not None and bool(mallopt(m_mmap_max, 0))
            and bool(mallopt(m_trim_threshold, 2**31 - 1)))


def release_freed_memory() -> bool:
    """Hand the freed memory that `keep_freed_memory` kept back to the system (glibc's
    malloc_trim), e.g. once training ends: the test and the report then start from the memory
    in use, not from the steps' high-water mark. Returns whether it ran (glibc only)."""
    malloc_trim = _glibc("malloc_trim")
    if malloc_trim is not None:
        malloc_trim(0)
    return malloc_trim is not None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_process(device: torch.device, num_threads: int | None, seed: int) -> None:
    """What a training run sets for the whole process before it builds anything: torch's
    thread count, glibc's keeping of freed memory (on the CPU), on CUDA cuDNN's kernel search
    (the batches' shapes are fixed, so it is done once per shape) and TF32 for float32 matrix
    products, and the global seeds."""
    if num_threads:
        torch.set_num_threads(num_threads)
    if device.type == "cpu":
        keep_freed_memory()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
        torch.cuda.reset_peak_memory_stats(device)
    seed_everything(seed)


def gpu_peak_memory_mb(device: torch.device) -> float | None:
    """The most GPU memory torch held for tensors since `prepare_process`, or None off CUDA."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def host_reads_are_free(device: torch.device) -> bool:
    """Whether reading a tensor's value on the host (`.item()`, `.tolist()`, `bool()`) costs
    nothing much on `device`: on the CPU it is a read; on a GPU it waits for every kernel queued
    before it, so the training step avoids them there."""
    return device.type == "cpu"


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device` (a GPU's kernels run after the call that queued
    them returns): before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def process_age() -> float:
    """Seconds since this process started, interpreter and imports included (Linux: /proc;
    elsewhere 0, so that a budget counts from when this is asked)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: ticks after boot
        return max(0.0, float(Path("/proc/uptime").read_text().split()[0]) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo; macOS: sysctl), else its kind."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                 capture_output=True, text=True, timeout=5).stdout.strip()
            if out:
                return out
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """The GPU's name (Apple's: its chip's), or the CPU's model and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"{cpu_name()} GPU (MPS)"
    return f"{cpu_name()}, {os.cpu_count()} cores"
