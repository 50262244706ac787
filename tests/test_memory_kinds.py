"""Memory whose kind or advice the kernel keeps per mapping: every madvise()
state VmFlags shows, MAP_DROPPABLE, and hugetlb memory, private and shared."""

import pytest

from conftest import checkpoint_restore


def free_huge_pages():
    for line in open("/proc/meminfo"):
        if line.startswith("HugePages_Free:"):
            return int(line.split()[1])
    return 0


def test_advice_and_droppable_memory(start_target, tmp_path):
    t = start_target("advised")
    checkpoint_restore(t, tmp_path / "images")
    t.check()


@pytest.mark.skipif(free_huge_pages() < 3, reason="needs 3 free 2 MiB huge pages "
                    "(/proc/sys/vm/nr_hugepages)")
def test_hugetlb_memory(start_target, tmp_path):
    t = start_target("advised", "huge")
    checkpoint_restore(t, tmp_path / "images")
    t.check()
