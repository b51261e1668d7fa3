"""When to compute in bf16. One answer, used by the frozen backbones (``backbone_dtype="auto"``) and by the SAC
updates (``mixed_precision="auto"``).

bf16 pays only where the hardware multiplies bf16 natively: on CPUs with AVX512-BF16 or AMX a bf16 [256, 256]
matrix product runs about 4x faster than float32 (measured 355 against 90 GFLOPS on one core). On other CPUs
oneDNN emulates bf16, which gains little or loses, so "auto" keeps float32 there. GPUs are not switched by "auto":
the updates are small there and it was not measured; set the option explicitly to use bf16 on a GPU.
"""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=None)
def native_bf16(device_type: str = "cpu") -> bool:
    """True when ``device_type`` multiplies bf16 natively and "auto" should choose bf16 (CPUs with AVX512-BF16 or
    AMX only)."""
    if device_type != "cpu":
        return False
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # a torch without these probes, or a non-x86 build
        return False


def cpu_bf16_name() -> str:
    """What makes this CPU's bf16 native, for log lines: "AMX", "AVX512-BF16" or "none"."""
    try:
        if torch.cpu._is_amx_tile_supported():
            return "AMX"
        if torch.cpu._is_avx512_bf16_supported():
            return "AVX512-BF16"
    except (AttributeError, RuntimeError):
        pass
    return "none"


def cpu_description() -> str:
    """The CPU's model name and what it multiplies bf16 with, for benchmark records, e.g.
    "Intel(R) Xeon(R) Processor (native bf16: AMX)". Speed figures mean little without it."""
    import platform

    name = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} (native bf16: {cpu_bf16_name()})"
