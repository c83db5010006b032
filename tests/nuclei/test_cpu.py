"""What `/model` says of the CPU (nuclei/cpu.py): which INT8 kernels run and whether the
answers are the card's, for the CPUs this project's hosts have."""

from pathlib import Path

import pytest

from nuclei.cpu import cpu_flags, int8_report

AVX2 = {"avx", "avx2", "fma"}
VNNI = AVX2 | {"avx512f", "avx512_vnni"}


@pytest.mark.parametrize(("flags", "reduce_range", "kernels", "answers"), [
    (VNNI, False, "VNNI (exact)", "as on the card"),
    (AVX2, True, "AVX2 (pairs summed in 16 bits)", "as on the card"),
    (AVX2, False, "AVX2 (pairs summed in 16 bits)", "may differ from the card"),
    (AVX2, None, "AVX2 (pairs summed in 16 bits)", "float32 model"),
])
def test_int8_report_names_the_kernels_and_whether_answers_hold(flags, reduce_range, kernels, answers):
    report = int8_report(reduce_range, flags)
    assert report["int8_kernels"] == kernels and report["answers"].startswith(answers)
    assert "avx2" in report["cpu"] and ("avx512_vnni" in report["cpu"]) == ("avx512_vnni" in flags)


def test_flags_are_read_from_cpuinfo(tmp_path: Path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_vnni\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_vnni"}
    assert cpu_flags(tmp_path / "missing") == set()
