"""Incremental dumps: pre-dump, dump --track-mem --prev-images-dir, and a
restore that follows the parent chain (resources/dirty.py, images/chain.py).

The target (targets/dirtier.c) rewrites 1% of its pages, drops one page the
earlier images hold and maps a new area between dumps, and checks every
page against its model after the restore."""

import json
import os
import signal
import time

import pytest

from conftest import reap_orphans, restore, restore_refused, run_hiber
from hiber.images.pagemap import PE_PARENT, read_pagemap

pytestmark = pytest.mark.timeout(180)


def _round(t, n):
    os.kill(t.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while f"ROUND {n}" not in t.output():
        assert time.monotonic() < deadline, t.output()
        time.sleep(0.01)


def _hiber_ok(*args):
    result = run_hiber(*args)
    assert result.returncode == 0, result.stderr.decode()
    return result


def _stats(images):
    decoded = run_hiber("decode", "-i", images / "stats-dump", check=True).stdout
    return json.loads(decoded)["entries"][0]["dump"]


def _tracker(images):
    return json.loads((images / "hiber-track.json").read_text())["tracker"]


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _dirs(tmp_path, *names):
    out = []
    for n in names:
        (tmp_path / n).mkdir()
        out.append(tmp_path / n)
    return out


def test_pre_dumps_then_dump_copy_only_what_changed(start_target, tmp_path):
    first, second, final = _dirs(tmp_path, "1", "2", "3")
    t = start_target("dirtier", 32)
    pages = int(t.info["pages"])

    _hiber_ok("pre-dump", "-t", t.pid, "-D", first, "-o", "pre.log")
    assert t.alive()
    full = _stats(first)["pages_written"]
    assert full >= pages
    tracker = _tracker(first)
    assert not _gone(tracker)

    _round(t, 1)
    _hiber_ok("pre-dump", "-t", t.pid, "-D", second, "-o", "pre.log",
              "--prev-images-dir", "../1")
    assert t.alive()
    assert os.readlink(second / "parent") == "../1"
    s = _stats(second)
    # 1% of the area was written, and a 4-page area is new; the rest of the
    # process (stack, libc's data) adds a little
    assert s["pages_written"] < full // 20, s
    assert s["pages_skipped_parent"] >= pages * 9 // 10, s
    assert _gone(tracker)  # retired: its record no longer matches its images
    reap_orphans()

    _round(t, 2)
    _hiber_ok("dump", "-t", t.pid, "-D", final, "-o", "dump.log", "--track-mem",
              "--prev-images-dir", "../2")
    assert t.wait(10) == -signal.SIGKILL
    reap_orphans()
    s = _stats(final)
    assert s["pages_written"] < full // 20, s
    runs = read_pagemap(final / f"pagemap-{t.pid}.img").runs
    assert any(r.flags & PE_PARENT for r in runs)

    restore(final)
    assert t.check()


def test_snapshots_left_running_chain(start_target, tmp_path):
    """criu's snapshot mode: dumps with --leave-running --track-mem, each the
    parent of the next; the last one is restored."""
    first, second, final = _dirs(tmp_path, "1", "2", "3")
    t = start_target("dirtier", 8)
    _hiber_ok("dump", "-t", t.pid, "-D", first, "-o", "dump.log", "-R", "--track-mem")
    _round(t, 1)
    _hiber_ok("dump", "-t", t.pid, "-D", second, "-o", "dump.log", "-R", "--track-mem",
              "--prev-images-dir", "../1")
    assert _stats(second)["pages_skipped_parent"] > 0
    _round(t, 2)
    _hiber_ok("dump", "-t", t.pid, "-D", final, "-o", "dump.log", "--track-mem",
              "--prev-images-dir", "../2")
    assert t.wait(10) == -signal.SIGKILL
    reap_orphans()
    restore(final)
    assert t.check()


def test_without_a_tracker_every_page_is_copied(start_target, tmp_path):
    """A parent whose tracker is gone (killed, machine rebooted) cannot say
    what changed: the dump copies everything, and the restore is right."""
    first, final = _dirs(tmp_path, "1", "2")
    t = start_target("dirtier", 4)
    _hiber_ok("pre-dump", "-t", t.pid, "-D", first, "-o", "pre.log")
    os.kill(_tracker(first), signal.SIGKILL)
    reap_orphans()
    _round(t, 1)
    _hiber_ok("dump", "-t", t.pid, "-D", final, "-o", "dump.log", "--prev-images-dir", "../1")
    assert t.wait(10) == -signal.SIGKILL
    reap_orphans()
    s = _stats(final)
    assert s["pages_skipped_parent"] == 0
    assert s["pages_written"] >= int(t.info["pages"])
    assert "tracker" in (final / "dump.log").read_text()
    restore(final)
    assert t.check()


def test_a_chain_without_its_parent_is_refused(start_target, tmp_path):
    first, final = _dirs(tmp_path, "1", "2")
    t = start_target("dirtier", 4)
    _hiber_ok("pre-dump", "-t", t.pid, "-D", first, "-o", "pre.log")
    _round(t, 1)
    _hiber_ok("dump", "-t", t.pid, "-D", final, "-o", "dump.log", "--prev-images-dir", "../1")
    assert t.wait(10) == -signal.SIGKILL
    reap_orphans()
    os.rename(first, tmp_path / "elsewhere")
    restore_refused(final, "parent")
    assert not t.alive()


def test_a_failed_dump_keeps_the_tracking(start_target, tmp_path):
    """A dump that fails (here on purpose, after the pages are written)
    leaves the process running and the parent's tracker as it was: a
    later dump against the same parent is still incremental and right."""
    first, failed, final = _dirs(tmp_path, "1", "2", "3")
    t = start_target("dirtier", 4)
    _hiber_ok("pre-dump", "-t", t.pid, "-D", first, "-o", "pre.log")
    _round(t, 1)
    result = run_hiber("dump", "-t", t.pid, "-D", failed, "-o", "dump.log",
                       "--prev-images-dir", "../1", env={"HIBER_FAULT": "written"})
    assert result.returncode == 1
    assert t.alive()
    assert not _gone(_tracker(first))
    _round(t, 2)
    _hiber_ok("dump", "-t", t.pid, "-D", final, "-o", "dump.log", "--prev-images-dir", "../1")
    assert t.wait(10) == -signal.SIGKILL
    reap_orphans()
    assert _stats(final)["pages_skipped_parent"] > 0
    restore(final)
    assert t.check()


def test_check_knows_dirty_tracking():
    result = run_hiber("check", "--feature", "mem_dirty_track")
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_dedup_frees_what_the_newer_image_holds(start_target, tmp_path):
    """--auto-dedup (and `hiber dedup`): the parent's copies of the pages the
    newer image holds are punched out, its size kept; the newest image of
    the chain still restores right."""
    first, second, final = _dirs(tmp_path, "1", "2", "3")
    t = start_target("dirtier", 16)
    _hiber_ok("pre-dump", "-t", t.pid, "-D", first, "-o", "pre.log")
    pages = next(first.glob("pages-*.img"))
    size, blocks = pages.stat().st_size, pages.stat().st_blocks
    _round(t, 1)
    _hiber_ok("pre-dump", "-t", t.pid, "-D", second, "-o", "pre.log",
              "--prev-images-dir", "../1", "--auto-dedup")
    written = _stats(second)["pages_written"]
    assert pages.stat().st_size == size
    # the pages the second image holds are gone from the first: the 1% of
    # the area rewritten at least (some it holds were not in the first at
    # all: the new area, fresh heap and stack pages)
    log = (second / "pre.log").read_text()
    freed = int(log.split("Deduplication: ")[1].split()[0])
    assert int(t.info["pages"]) // 100 <= freed <= written
    assert (blocks - pages.stat().st_blocks) * 512 == freed * 4096
    _round(t, 2)
    _hiber_ok("dump", "-t", t.pid, "-D", final, "-o", "dump.log", "--prev-images-dir", "../2")
    assert t.wait(10) == -signal.SIGKILL
    reap_orphans()
    result = _hiber_ok("dedup", "-D", final, "-o", "dedup.log")
    assert "freed" in result.stderr.decode()
    restore(final)
    assert t.check()
