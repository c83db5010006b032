"""The CPU the model runs on, where it changes the answer: onnxruntime's INT8 kernels for x86
CPUs without VNNI (AVX2's VPMADDUBSW) add pairs of 8-bit products in 16 bits, which saturate
on full-range weights; with 7-bit weights (`quantize --reduce-range`) they cannot. The
service reports which case it is in on `/model`."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
EXACT_INT8 = {"avx512_vnni", "avx_vnni", "amx_int8"}  # 8-bit dot products summed in 32 bits


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def describe(flags: set[str] | None = None) -> str:
    """'x86_64 avx2 avx512f avx512_vnni': the flags that change speed or INT8 answers."""
    flags = cpu_flags() if flags is None else flags
    return " ".join([platform.machine(), *(f for f in VECTOR_FLAGS if f in flags)])


def int8_report(reduce_range: bool | None, flags: set[str] | None = None) -> dict[str, Any]:
    """What `/model` says of the CPU: its flags, the INT8 kernels onnxruntime picks on it, and
    whether this model's answers are those of its card (`reduce_range` None: not an INT8 model)."""
    flags = cpu_flags() if flags is None else flags
    x86 = "avx2" in flags
    kernels = "VNNI (exact)" if flags & EXACT_INT8 else "AVX2 (pairs summed in 16 bits)" if x86 else "other"
    if reduce_range is None:
        answers = "float32 model: the same on every CPU, up to rounding"
    elif reduce_range or kernels != "AVX2 (pairs summed in 16 bits)":
        answers = "as on the card: 7-bit weights cannot saturate, the same on VNNI and AVX2 CPUs"
    else:
        answers = "may differ from the card: full-range 8-bit weights saturate AVX2 kernels (serve the float32 model)"
    return {"cpu": describe(flags), "int8_kernels": kernels, "answers": answers}
