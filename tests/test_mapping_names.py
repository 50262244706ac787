"""Names of anonymous mappings (prctl PR_SET_VMA_ANON_NAME, `[anon:NAME]`
in maps): kept in the vma_entry (a field of hiber's own) and given back,
refused on a kernel that cannot name mappings; named shared anonymous
mappings are refused at dump (issue 9 section 3)."""


import pytest

from conftest import dump_and_kill, run_hiber
from hiber.images import vma as V
from hiber.images.imagedir import ImageDir
from hiber.kernel.sys import can_name_anonymous_mappings

pytestmark = pytest.mark.timeout(120)
NAMES = can_name_anonymous_mappings()
WITHOUT_NAMES = "this kernel cannot name mappings (CONFIG_ANON_VMA_NAME)"


def restore(images):
    return run_hiber("restore", "-D", images, "-d", "-o", "restore.log")


def test_named_mappings_come_back(start_target, tmp_path):
    t = start_target("named")
    assert t.info["names"] == ("1" if NAMES else "0")
    images = tmp_path / "images"
    dump_and_kill(t, images)
    names = sorted(v.anon_name for v in ImageDir(images).read_one("MM", t.pid).vmas
                   if v.HasField("anon_name"))
    assert names == (["hiber-one", "hiber-two"] if NAMES else [])
    result = restore(images)
    assert result.returncode == 0, result.stderr.decode()
    t.check()  # names on their ranges (where the kernel has them), data intact


@pytest.mark.skipif(NAMES, reason="this kernel can name mappings")
def test_a_name_this_kernel_cannot_give_is_refused(start_target, tmp_path):
    t = start_target("named")
    images = tmp_path / "images"
    dump_and_kill(t, images)
    d = ImageDir(images)
    mm = d.read_one("MM", t.pid)
    vma = next(v for v in mm.vmas if v.status == V.VMA_AREA_REGULAR | V.VMA_ANON_PRIVATE)
    vma.anon_name = "from-another-kernel"
    d.write("MM", t.pid, [mm])
    result = restore(images)
    message = result.stderr.decode()
    assert result.returncode == 1 and message.count("\n") == 1, message
    assert f"[anon:from-another-kernel], and {WITHOUT_NAMES}" in message, message
    assert not t.alive()


@pytest.mark.skipif(not NAMES, reason=WITHOUT_NAMES)
def test_a_named_shared_anonymous_mapping_is_refused(start_target, tmp_path):
    t = start_target("named", "shared")
    result = run_hiber("dump", "-t", t.pid, "-D", tmp_path / "images", "-o", "dump.log")
    message = result.stderr.decode()
    assert result.returncode == 1 and message.count("\n") == 1, message
    assert "is named [anon_shmem:hiber-shared]" in message, message
    t.check()


def test_names_read_from_maps_lines_as_a_naming_kernel_prints_them():
    """Whatever this kernel can do: the lines maps prints for named mappings
    (fs/proc/task_mmu.c) are classified right, the shared one refused."""
    from hiber.kernel.proc import Mapping
    from hiber.resources.files import FileTable
    from hiber.resources.vmas import UnsupportedMapping, VmaClassifier
    classifier = VmaClassifier(1, FileTable())
    private = Mapping(0x7f0000000000, 0x7f0000004000, "rw-p", 0, "00:00", 0,
                      "[anon:hiber-one]", {"rd", "wr", "mr", "mw", "me", "ac"})
    entry = classifier._vma_entry(private)
    assert entry.anon_name == "hiber-one"
    assert entry.status == V.VMA_AREA_REGULAR | V.VMA_ANON_PRIVATE
    shared = Mapping(0x7f0000010000, 0x7f0000011000, "rw-s", 0, "00:01", 2048,
                     "[anon_shmem:hiber-shared]", {"rd", "wr", "sh", "mr", "mw", "me", "ms"})
    with pytest.raises(UnsupportedMapping, match=r"is named \[anon_shmem:hiber-shared\]"):
        classifier._vma_entry(shared)
