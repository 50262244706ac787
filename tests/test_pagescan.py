"""PAGEMAP_SCAN read in batches (kernel/pagescan.py) over write-protected
memory, as an incremental dump reads it: runs come back in order, each page
once, written and unwritten told apart, however the kernel splits the walk
(it has been seen to report a run past where its walk stopped)."""

import mmap
import os

import pytest

from hiber.kernel import pagescan, uffd
from hiber.kernel.sys import address_of, syscall

PAGE = 4096
PAGES = 65536        # 256 MiB: smaller areas did not show the short walk_end
HUGE = 2 << 20


@pytest.fixture
def protected_area():
    # 2 MiB aligned and advised huge, as a big heap is: the walk then meets
    # transparent huge pages, where the kernel's walk_end fell short
    whole = mmap.mmap(-1, PAGES * PAGE + HUGE)
    base = address_of(whole)
    offset = -base % HUGE
    area = memoryview(whole)[offset:offset + PAGES * PAGE]
    start = base + offset
    whole.madvise(mmap.MADV_HUGEPAGE, offset, PAGES * PAGE)
    for i in range(PAGES):
        area[i * PAGE] = 1
    fd = syscall("userfaultfd", os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        uffd.enable_async_wp(fd)
        uffd.register_wp(fd, start, PAGES * PAGE)
        uffd.write_protect(fd, start, PAGES * PAGE)
        yield area, start
    finally:
        os.close(fd)
        area.release()
        whole.close()


@pytest.mark.parametrize("batch", [1, 7, 4096])
def test_written_runs_ascend_and_cover_each_page_once(protected_area, batch):
    area, start = protected_area
    written = set(range(0, PAGES, 100))
    for i in written:
        area[i * PAGE] = 2
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        runs = list(pagescan.scan(
            fd, start, start + PAGES * PAGE, anyof=pagescan.PAGE_IS_PRESENT,
            report=pagescan.PAGE_IS_PRESENT | pagescan.PAGE_IS_WRITTEN, batch=batch))
    finally:
        os.close(fd)
    previous_end, seen, seen_written = start, [], set()
    for lo, hi, categories in runs:
        assert lo >= previous_end and hi > lo
        previous_end = hi
        numbers = range((lo - start) // PAGE, (hi - start) // PAGE)
        seen += numbers
        if categories & pagescan.PAGE_IS_WRITTEN:
            seen_written |= set(numbers)
    assert seen == list(range(PAGES))
    assert seen_written == written
