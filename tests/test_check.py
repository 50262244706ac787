"""hiber check: every probe runs; --feature exits 0 only when it works."""

import pytest

from conftest import run_hiber


def test_check_lists_every_probe():
    from hiber.kernel.probes import PROBES
    result = run_hiber("check", check=True)
    lines = result.stdout.decode().splitlines()
    assert [line.split()[0] for line in lines[:-1]] == [p.name for p in PROBES]
    assert lines[-1] == "Looks good."
    for line in lines[:-1]:
        assert line.split()[1] in ("ok", "MISSING")
        if "MISSING" in line:
            assert " -> " in line  # says what is lost


def test_feature_that_works_here_exits_0():
    for feature in ("clone3_set_tid", "pagemap_scan", "get_rseq_conf", "seccomp_filters",
                    "seccomp_suspend"):
        assert run_hiber("check", "--feature", feature).returncode == 0, feature


def test_feature_missing_here_exits_1():
    everything = run_hiber("check").stdout.decode().splitlines()
    missing = [line.split()[0] for line in everything if " MISSING " in f" {line} "]
    if not missing:
        pytest.skip("this kernel has every feature hiber checks")
    result = run_hiber("check", "--feature", missing[0])
    assert result.returncode == 1 and b"MISSING" in result.stdout


def test_unknown_feature_is_one_line():
    result = run_hiber("check", "--feature", "no-such-thing")
    assert result.returncode == 1 and result.stderr.count(b"\n") == 1


def test_version_prints_criu_version_line_first():
    # tools that drive criu parse "Version: X.Y" from the first line
    for flag in ("--version", "-V"):
        result = run_hiber(flag, check=True)
        lines = result.stdout.decode().splitlines()
        assert lines[0] == "Version: 4.2"
        assert lines[1].startswith("hiber ")
