"""Register state in its hard forms: the x87 stack and control words, MXCSR,
PKRU and protection-keyed memory, gs_base and fs_base, in two threads
(targets/fpustate.c); and threads stopped in the middle of a computation
that keeps everything in registers, flags included (targets/midloop.c)."""

import pytest

from conftest import dump_and_kill, run_hiber
from hiber.images.imagedir import ImageDir

pytestmark = pytest.mark.timeout(120)


def restore(images):
    result = run_hiber("restore", "-D", images, "-d", "-o", "restore.log")
    assert result.returncode == 0, result.stderr.decode() + \
        (images / "restore.log").read_text()[-2000:]


def test_x87_mxcsr_pkru_and_segment_bases(start_target, tmp_path):
    t = start_target("fpustate")
    images = tmp_path / "images"
    dump_and_kill(t, images)
    restore(images)
    t.check()


def test_memory_with_a_protection_key_is_refused(start_target, tmp_path):
    """A restore could not give the page its key back (nothing shows which
    keys the process holds): the dump refuses, and the process runs on."""
    t = start_target("fpustate", "keyed")
    if t.info["pku"] != "1":
        pytest.skip("no protection keys on this CPU")
    result = run_hiber("dump", "-t", t.pid, "-D", tmp_path / "images", "-o", "dump.log")
    assert result.returncode == 1
    message = result.stderr.decode()
    assert f"PID {t.pid}: mapping {int(t.info['keyed'], 16):x}-" in message, message
    assert "memory protection key 1 (pkey_mprotect)" in message, message
    t.check()


@pytest.mark.parametrize("how", ["restored", "left_running"])
def test_threads_stopped_mid_computation(start_target, tmp_path, how):
    """Both threads are dumped inside the loop, at whatever instruction
    they were on; restored (or left running after the dump's injected
    calls) they finish with exactly the sums computed in C."""
    t = start_target("midloop")
    if t.info["supported"] != "1":
        pytest.skip("the loop needs AVX2, BMI2 and ADX")
    images = tmp_path / "images"
    if how == "restored":
        dump_and_kill(t, images)
    else:
        result = run_hiber("dump", "-t", t.pid, "-D", images, "-R", "-o", "dump.log")
        assert result.returncode == 0, result.stderr.decode()
    top, end = t.address("top"), t.address("end")
    for tid in (t.pid, int(t.info["worker"])):
        ip = ImageDir(images).read_one("CORE", tid).thread_info.gpregs.ip
        assert top <= ip < end, f"thread {tid} was dumped at {ip:#x}, not inside the loop"
    if how == "restored":
        restore(images)
    t.check(timeout=60)
