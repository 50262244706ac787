"""uprobes, the whole story: dump refuses without --allow-uprobes and skips
the [uprobes] area with it; restore refuses without it; with it, the probes
active at restore are armed again by the kernel and keep being hit, wherever
they are (the program's own text, libc, both), and breakpoints of probes gone
since the dump are not written back, so the process runs on without them.
Probes are real, made through tracefs and through perf_event_open."""

import contextlib
import re
import time

import pytest

from conftest import TARGETS_BIN, reap_orphans, run_hiber
from hiber.images import vma as V
from hiber.images.imagedir import ImageDir
from hiber.kernel import proc
from uprobes import PerfUprobe, TracefsUprobe

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
REFUSED = ("PID {pid} has a [uprobes] mapping: check which uprobes are attached to it and "
           "re-run with --allow-uprobes")
UPROBED = TARGETS_BIN / "uprobed"
# tests/targets/uprobed.c: the kernel emulates the first three, steps the
# others out of line
OWN_SITES = ("site_nop", "site_push", "site_call",
             "site_store", "site_load", "site_riprel", "site_indirect_call")
LIBC_SITES = ("a64l", "l64a")  # called by nothing else here: no other process is disturbed
SITES = {
    "own": [(UPROBED, s) for s in OWN_SITES],
    "libc": [(LIBC, s) for s in LIBC_SITES],
    "both": [(UPROBED, s) for s in OWN_SITES] + [(LIBC, s) for s in LIBC_SITES],
}


def start_uprobed(start_target, tmp_path):
    return start_target("uprobed", tmp_path / "jit-code")


def probes(stack, how, pid, sites):
    """Enter one probe per site on ``stack``, which removes them all, even
    when a test fails half-way."""
    made = []
    for binary, symbol in sites:
        if how == "tracefs":
            made.append(stack.enter_context(TracefsUprobe(binary, symbol, f"{symbol}_{pid}")))
        elif how == "perf":
            made.append(stack.enter_context(PerfUprobe(None, binary, symbol)))
        else:  # perf, for the one task
            made.append(stack.enter_context(PerfUprobe(pid, binary, symbol)))
    return made


def all_hit(made, timeout=5):
    """Every probe's count grows (the target runs every site each ~1 ms)."""
    before = [p.hits() for p in made]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if all(p.hits() > b for p, b in zip(made, before)):
            return True
    return False


def dump(t, images):
    result = run_hiber("dump", "-t", t.pid, "-D", images, "--allow-uprobes")
    assert result.returncode == 0, result.stderr.decode()
    assert t.wait(10) == -9
    reap_orphans()


def restore(images):
    result = run_hiber("restore", "-D", images, "-d", "--allow-uprobes", "-o", "restore.log")
    assert result.returncode == 0, result.stderr.decode()
    return (images / "restore.log").read_text()


def text_anonymous_kib(pid, binary):
    """Anonymous (private copies of) pages in the executable mapping of binary."""
    lines = open(f"/proc/{pid}/smaps").read().splitlines()
    for i, line in enumerate(lines):
        if line.endswith(str(binary)) and line.split()[1] == "r-xp":
            for field in lines[i + 1:]:
                if field.startswith("Anonymous:"):
                    return int(field.split()[1])
    raise AssertionError(f"PID {pid} has no r-xp mapping of {binary}")


@pytest.mark.parametrize("how", ["tracefs", "perf"])
@pytest.mark.parametrize("where", ["own", "libc", "both"])
def test_active_probes_keep_being_hit(start_target, tmp_path, where, how):
    """Only in the program's own text was the case that died: nothing else
    marked the restored mm as having uprobes (resources/uprobes.py)."""
    t = start_uprobed(start_target, tmp_path)
    with contextlib.ExitStack() as stack:
        made = probes(stack, how, t.pid, SITES[where])
        assert all_hit(made)
        dump(t, tmp_path)
        log = restore(tmp_path)
        assert all_hit(made), "probes not hit after the restore"
        assert t.alive(), "the restored process died"
        assert "not restored" not in log  # every dumped breakpoint is armed again
        # the program's text is the file's, but for the one page (all its
        # sites share it) the kernel copied to arm the probes
        assert text_anonymous_kib(t.pid, UPROBED) == (0 if where == "libc" else 4)
        t.check()


def test_probes_of_the_dumped_task_are_gone_and_the_restored_one_runs_on(
        start_target, tmp_path):
    """perf probes for one task die with it. Their breakpoints are in the
    dump, but not written back (logged), so the restored process runs its
    original code, and new probes for it work as for any process."""
    t = start_uprobed(start_target, tmp_path)
    with contextlib.ExitStack() as stack:
        made = probes(stack, "task", t.pid, SITES["both"])
        assert all_hit(made)
        result = run_hiber("dump", "-t", t.pid, "-D", tmp_path / "refused")
        assert result.returncode == 1
        assert result.stderr.decode() == f"hiber: {REFUSED.format(pid=t.pid)}\n"
        assert proc.stat(t.pid).state in "SR"
        dump(t, tmp_path)
    d = ImageDir(tmp_path)
    assert d.inventory().allow_uprobes
    assert not any(v.start == 0x7fffffffe000 or v.status & V.VMA_AREA_UPROBES
                   for v in d.read_one("MM", t.pid).vmas)
    result = run_hiber("restore", "-D", tmp_path, "-d")
    assert result.returncode == 1 and b"restore with --allow-uprobes" in result.stderr
    log = restore(tmp_path)
    dropped = re.findall(r"int3 at 0x[0-9a-f]+ \((\S+)\+0x[0-9a-f]+\) not restored", log)
    assert sorted(dropped) == sorted(str(b) for b, _ in SITES["both"]), log
    time.sleep(0.1)
    assert t.alive(), "the restored process died"
    assert text_anonymous_kib(t.pid, UPROBED) == 0  # the file's code, uncopied
    with contextlib.ExitStack() as stack:
        assert all_hit(probes(stack, "task", t.pid, SITES["both"]))
    t.check()



def test_a_dump_leaves_the_programs_own_sigtrap_handler(start_target, tmp_path):
    """Injected calls end in single-step traps, which the kernel forces: had
    SIGTRAP been blocked meanwhile, its handler would be reset to SIG_DFL
    and the program's next int3 would kill it."""
    def caught(pid):
        line = next(l for l in open(f"/proc/{pid}/status") if l.startswith("SigCgt:"))
        return int(line.split()[1], 16)

    t = start_uprobed(start_target, tmp_path)
    before = caught(t.pid)
    assert before & (1 << (5 - 1))  # SIGTRAP
    result = run_hiber("dump", "-t", t.pid, "-D", tmp_path, "-R")
    assert result.returncode == 0, result.stderr.decode()
    assert caught(t.pid) == before
    time.sleep(0.05)
    t.check()

# ---- the rules of resources/uprobes.py, on plain bytes -----------------------

def _page(*changes, base=b"\x90" * 4096):
    page = bytearray(base)
    for offset, byte in changes:
        page[offset] = byte
    return bytes(page)


def test_code_page_rules():
    from hiber.resources.uprobes import restored_code_page
    file = _page()
    armed_now = _page((100, 0xCC))
    # the dump is what the kernel made again: nothing to write
    assert restored_code_page(_page((100, 0xCC)), file, armed_now) == (None, [])
    # breakpoints only: the kernel's page stands; the one not armed now is reported
    assert restored_code_page(_page((200, 0xCC)), file, armed_now) == (None, [200])
    assert restored_code_page(_page((200, 0xCC)), file, file) == (None, [200])
    # the program changed the page: its contents, int3 and all, with the
    # probe armed now kept armed
    dumped = _page((200, 0xCC), (300, 0x01))
    assert restored_code_page(dumped, file, file) == (dumped, [])
    assert restored_code_page(dumped, file, armed_now) == \
        (_page((100, 0xCC), (200, 0xCC), (300, 0x01)), [])


def test_runs_are_cut_at_code_vmas():
    from hiber.images.pagemap import PE_PRESENT, PageRun
    from hiber.images.messages import classes
    from hiber.resources.uprobes import split_code_runs

    def vma(start, end, prot, status=V.VMA_FILE_PRIVATE | V.VMA_AREA_REGULAR):
        return classes["vma_entry"](start=start, end=end, prot=prot, status=status,
                                    flags=V.MAP_PRIVATE, pgoff=0, shmid=1, fd=-1)

    text = vma(0x2000, 0x4000, V.PROT_READ | V.PROT_EXEC)
    vmas = [vma(0x1000, 0x2000, V.PROT_READ), text,
            vma(0x4000, 0x5000, V.PROT_READ | V.PROT_WRITE)]
    run = PageRun(vaddr=0x1000, nr_pages=4, flags=PE_PRESENT, pages_offset=0x8000)
    rest, code = split_code_runs([run], vmas)
    assert [(r.vaddr, r.nr_pages, r.pages_offset) for r in rest] == \
        [(0x1000, 1, 0x8000), (0x4000, 1, 0xb000)]
    assert [(r.vaddr, r.nr_pages, r.pages_offset, v.start) for r, v in code] == \
        [(0x2000, 2, 0x9000, 0x2000)]


def test_optimized_uprobes_are_refused_and_the_process_runs_on(start_target, tmp_path):
    # Linux 6.18 turns a probed 5-byte nop into a call to [uprobes-trampoline]
    from conftest import build_target
    from uprobes import TracefsUprobe
    t = start_target("nop5")
    with TracefsUprobe(build_target("nop5"), "site_nop5", f"nop5_{t.pid}") as probe:
        deadline = time.monotonic() + 5
        while "[uprobes-trampoline]" not in open(f"/proc/{t.pid}/maps").read():
            if time.monotonic() > deadline:
                pytest.skip("this kernel does not optimize uprobes on 5-byte nops")
            time.sleep(0.02)
        for extra in ((), ("--allow-uprobes",)):
            result = run_hiber("dump", "-t", t.pid, "-D", tmp_path / "images", "-R", *extra)
            err = result.stderr.decode().strip()
            assert result.returncode == 1 and len(err.splitlines()) == 1, err
            assert "optimized uprobes" in err and "[uprobes-trampoline]" in err
        assert probe.hits() > 0
    t.check()
