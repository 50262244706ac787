"""The vdso across restores: in place, through a proxy with its mark, and
back; and the planning against CRIU 4.2's own logs."""

import re

from conftest import GOLDEN, checkpoint_restore, reap_orphans, run_hiber
from hiber.images import vma as V
from hiber.images.imagedir import ImageDir
from hiber.kernel import proc
from hiber.resources.vdso import MARK_SIZE, VdsoMark
from hiber.restore import plan_vdso

KERNEL_AREAS = ("[vvar]", "[vvar_vclock]", "[vdso]")


def kernel_areas(pid):
    return {m.path: (m.start, m.end) for m in proc.maps(pid) if m.path in KERNEL_AREAS}


def ordinary_mappings(pid):
    """Every mapping but the kernel's vvar/vvar_vclock/vdso: (range, perms)."""
    return {((m.start, m.end), m.perms) for m in proc.maps(pid) if m.path not in KERNEL_AREAS}


def cycle(t, images, *restore_env):
    result = run_hiber("dump", "-t", t.pid, "-D", images, "-o", "dump.log")
    assert result.returncode == 0, result.stderr.decode()
    assert t.wait(10) == -9
    reap_orphans()
    env = dict(restore_env) if restore_env else None
    result = run_hiber("restore", "-D", images, "-d", "-o", "restore.log", env=env)
    assert result.returncode == 0, result.stderr.decode()
    return ImageDir(images)


def vdso_vvar_entries(d, pid):
    vmas = d.read_one("MM", pid).vmas
    return ([(v.start, v.end) for v in vmas if v.status & V.VMA_AREA_VDSO],
            [(v.start, v.end) for v in vmas if v.status & V.VMA_AREA_VVAR])


def test_proxy_then_in_place_then_proxy(start_target, tmp_path):
    t = start_target("clocks")
    original = kernel_areas(t.pid)
    vdso_at = original["[vdso]"]
    vvar_at = (original["[vvar]"][0], original["[vvar_vclock]"][1])
    others = ordinary_mappings(t.pid)

    # 1. through the proxy (forced, as criu's CRIU_FAULT=127 forces it)
    cycle(t, tmp_path / "one", ("CRIU_FAULT", "127"))
    runtime = kernel_areas(t.pid)
    assert runtime["[vdso]"] != vdso_at  # the kernel's vdso is parked elsewhere
    by_start = {m.start: m for m in proc.maps(t.pid)}
    assert by_start[vdso_at[0]].perms == "r-xp" and by_start[vdso_at[0]].path == ""  # proxy
    assert by_start[vvar_at[0]].perms == "r--p"  # the stale vvar
    # besides the parked vvar, vvar_vclock and vdso, only the proxy and the
    # process's old vvar area (one plain mapping now) are new
    assert ordinary_mappings(t.pid) == others | {(vdso_at, "r-xp"), (vvar_at, "r--p")}
    with open(f"/proc/{t.pid}/mem", "rb") as mem:
        mem.seek(runtime["[vdso]"][0])
        mark = VdsoMark.parse(mem.read(MARK_SIZE))
    assert mark == VdsoMark(vdso_at[0], vvar_at[0], runtime["[vvar]"][0])

    # 2. dumped again: the mark is recognised, the image has the process's own
    # vdso and vvar and nothing of the runtime pair; restored in place
    d = cycle(t, tmp_path / "two")
    assert vdso_vvar_entries(d, t.pid) == ([vdso_at], [vvar_at])
    assert not any(v.start == runtime["[vdso]"][0] or v.start == runtime["[vvar]"][0]
                   for v in d.read_one("MM", t.pid).vmas)
    assert kernel_areas(t.pid) == original
    assert ordinary_mappings(t.pid) == others

    # 3. and through the proxy once more
    d = cycle(t, tmp_path / "three", ("CRIU_FAULT", "127"))
    assert vdso_vvar_entries(d, t.pid) == ([vdso_at], [vvar_at])
    assert ordinary_mappings(t.pid) == others | {(vdso_at, "r-xp"), (vvar_at, "r--p")}
    t.check()


# ---- planning, against the logs CRIU 4.2 wrote for the golden images ------

IMAGE_LINE = re.compile(r"pie: (\d+): vdso: image \[vdso\] 0x([0-9a-f]+)-0x([0-9a-f]+) "
                        r"\[vvar\] 0x([0-9a-f]+)-0x([0-9a-f]+)")
JUMP_LINE = re.compile(r"pie: (\d+): vdso: jmp: 0x[0-9a-f]+/0x([0-9a-f]+) -> ")
MARK_LINE = re.compile(r"Found marked at [0-9a-f]+ \(orig vDSO at ([0-9a-f]+) VVAR at ([0-9a-f]+)\)")


def test_forced_proxy_plan_matches_criu_log():
    log = (GOLDEN / "multi" / "images" / "restore-with-forced-proxy.log").read_text()
    expected = {int(m[1]): ((int(m[2], 16), int(m[3], 16)), (int(m[4], 16), int(m[5], 16)))
                for m in IMAGE_LINE.finditer(log)}
    jumps = {}
    for m in JUMP_LINE.finditer(log):
        jumps.setdefault(int(m[1]), []).append(int(m[2], 16))
    plans = {p.pid: p for p in plan_vdso(GOLDEN / "multi" / "images", force_proxy=True)}
    assert set(plans) == set(expected) == {2433, 2435}
    for pid, (vdso, vvar) in expected.items():
        assert plans[pid].proxy
        assert (plans[pid].vdso, plans[pid].vvar) == (vdso, vvar)
        assert [offset for offset, _ in plans[pid].jumps] == jumps[pid]


def test_marked_dump_plan_matches_criu_log():
    log = (GOLDEN / "multi-proxy" / "images" / "dump.log").read_text()
    marks = {(int(a, 16), int(b, 16)) for a, b in MARK_LINE.findall(log)}
    assert len(marks) == 1
    (vdso_start, vvar_start), = marks
    plans = plan_vdso(GOLDEN / "multi-proxy" / "images")
    assert len(plans) == 2
    for p in plans:
        assert p.vdso[0] == vdso_start and p.vvar[0] == vvar_start
        assert not p.proxy  # same kernel: the next restore is in place
    d = ImageDir(GOLDEN / "multi-proxy" / "images")
    for pid in d.keys("MM"):
        assert all(v.start >= 0x100000 for v in d.read_one("MM", pid).vmas)


def test_a_process_without_vdso_comes_back_without(start_target, tmp_path):
    t = start_target("novdso")
    images = tmp_path / "images"
    checkpoint_restore(t, images)
    assert vdso_vvar_entries(ImageDir(images), t.pid) == ([], [])
    t.check()
