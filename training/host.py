"""The precision `--precision auto` trains in, from the CPU's flags (`nuclei.cpu`), which
also go into every leg's record: speeds differ 5× between this project's hosts."""

from __future__ import annotations

from nuclei.cpu import cpu_flags


def auto_precision(flags: set[str] | None = None) -> str:
    """bfloat16 only where the CPU computes it natively: measured 1.5× float32's speed with
    avx512_bf16, 8× slower without (docs/training.md)."""
    flags = cpu_flags() if flags is None else flags
    return "mixed_bfloat16" if {"avx512_bf16", "amx_bf16"} & flags else "float32"
