"""memfds and shared anonymous memory, through CRIU's memfd path (spec §3.2):

* every shmem inode (a MAP_SHARED|MAP_ANONYMOUS area shows up as
  ``/dev/zero (deleted)``, a memfd as ``/memfd:NAME (deleted)``) becomes one
  memfd_inode_entry in memfd.img, keyed by an inode_id;
* its contents go to pagemap-shmem-<inode number>.img + pages-N.img, with
  vaddr = byte offset in the object;
* each mapping or fd refers to it through a MEMFD file_entry.

Both halves live here: the dump's SharedObjects, and the restore's
StubObjects, which the root stub creates once for the whole tree (so a
shared object stays one object), the memfd kind of the files table (fds
and mappings of an object), and the seals, which go on last.
"""

import fcntl
import os

from ...images import vma as V
from ...images.messages import classes
from ...images.pagemap import PAGE_SIZE, PE_PRESENT
from .common import O_ACCMODE, O_CLOEXEC, high_dup, set_status_flags
from .owners import no_owner
from .table import FD_TYPES, Kind, nothing_to_check

F_ADD_SEALS = 1033
F_GET_SEALS = 1034


# what maps shows for MAP_HUGETLB|MAP_ANONYMOUS memory: an unlinked file of
# the kernel's internal hugetlbfs mount (mm/hugetlb.c, hugetlb_file_setup)
ANON_HUGETLB_PATH = "/anon_hugepage (deleted)"


def is_shmem_path(path):
    return (path.startswith(("/dev/zero (deleted)", "/memfd:", ANON_HUGETLB_PATH))
            and path.endswith("(deleted)"))


def hugetlb_flag(fd):
    """memfd_inode_entry.hugetlb_flag of an object: MFD_HUGETLB and the huge
    page size, or 0 on tmpfs. hugetlbfs reports its huge page size as the
    block size (fs/hugetlbfs, hugetlbfs_statfs), tmpfs the base page size."""
    block = os.fstatvfs(fd).f_bsize
    return V.MFD_HUGETLB | V.hugetlb_size_bits(block) if block > PAGE_SIZE else 0


def object_name(path):
    """memfd_inode_entry.name: "/dev/zero" for anonymous shared memory,
    "memfd:NAME" for a memfd (the link text without "/" and " (deleted)")."""
    name = path[:-len(" (deleted)")]
    return name[1:] if name.startswith("/memfd:") else name


class SharedObjects:
    """Collects shmem inodes; writes memfd.img and their page images."""

    def __init__(self, files):
        self.files = files             # the FileTable: allocates file ids
        self.inodes = {}               # inode number -> [inode_id, entry, open fd]
        self.pages_ids = {}            # inode number -> pages id, once assigned
        self.mapped_file_ids = {}      # inode_id -> file id of its mappings
        self.pages_written = 0
        self.pages_scanned = 0

    def _inode(self, path, open_path):
        fd = os.open(open_path, os.O_RDONLY)
        info = os.fstat(fd)
        if info.st_ino in self.inodes:
            os.close(fd)
            return self.inodes[info.st_ino][0]
        inode_id = len(self.inodes) + 1
        try:
            seals = fcntl.fcntl(fd, F_GET_SEALS)
        except OSError:
            seals = 1  # F_SEAL_SEAL: anonymous shared memory cannot be sealed
        entry = classes["memfd_inode_entry"](
            name=object_name(path), uid=info.st_uid, gid=info.st_gid, size=info.st_size,
            shmid=info.st_ino, seals=seals, inode_id=inode_id, mode=info.st_mode)
        huge = hugetlb_flag(fd)
        if huge:
            entry.hugetlb_flag = huge
        self.inodes[info.st_ino] = [inode_id, entry, fd]
        return inode_id

    def _file_entry(self, inode_id, flags, pos, fown):
        return self.files.add(KIND, classes["memfd_file_entry"](
            id=0, flags=flags, pos=pos, fown=fown, inode_id=inode_id))

    def mapping(self, path, link):
        """File id for a VMA backed by a shmem object (one per object)."""
        inode_id = self._inode(path, link)
        if inode_id not in self.mapped_file_ids:
            self.mapped_file_ids[inode_id] = self._file_entry(inode_id, 0, 0, no_owner())
        return self.mapped_file_ids[inode_id]

    def fd(self, path, fd_path, flags, pos, fown):
        """File id for an open memfd fd."""
        inode_id = self._inode(path, fd_path)
        return self._file_entry(inode_id, flags & ~O_CLOEXEC, pos, fown)

    def assign_pages_ids(self, next_pages_id):
        """Give each object not yet numbered a pages id; returns the next free."""
        for number in self.inodes:
            if number not in self.pages_ids:
                self.pages_ids[number] = next_pages_id
                next_pages_id += 1
        return next_pages_id

    def write(self, images, buffer):
        """memfd.img, and each object's contents: only its data (not holes)."""
        if not self.inodes:
            return
        images.write("MEMFD_INODE", None, [e for _, e, _ in self.inodes.values()])
        for number, (_, entry, fd) in self.inodes.items():
            size = os.fstat(fd).st_size
            self.pages_scanned += (size + PAGE_SIZE - 1) // PAGE_SIZE
            self.pages_written += write_object_pages(images, number, self.pages_ids[number],
                                                     fd, size, buffer)

    def close(self):
        for _, _, fd in self.inodes.values():
            os.close(fd)
        self.inodes.clear()


def write_object_pages(images, key, pages_id, fd, size, buffer):
    """A shmem object's data (not its holes) as pagemap-shmem-KEY.img and
    its pages file, vaddr being the offset in the object; pages written."""
    view = memoryview(buffer)
    with images.pagemap_writer(key, pages_id, shmem=True) as w:
        for start, end in _data_ranges(fd, size):
            offset = start
            while offset < end:
                n = min(len(buffer), end - offset)
                got = os.preadv(fd, [view[:n]], offset)
                if got < n:  # the object shrank: pad, as a hole reads
                    view[got:n] = bytes(n - got)
                w.add(offset, n // PAGE_SIZE, PE_PRESENT, view[:n])
                offset += n
        return w.pages_written


def write_chunks(fd, chunks):
    """(offset, bytes) chunks of a pages reader, written into the object."""
    for offset, chunk in chunks:
        done = 0
        while done < len(chunk):
            done += os.pwrite(fd, chunk[done:], offset + done)


def _data_ranges(fd, size):
    """Page-aligned (start, end) ranges holding data, skipping holes."""
    offset = 0
    end_of_object = (size + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError:
            return  # ENXIO: no data after offset
        end = os.lseek(fd, start, os.SEEK_HOLE)
        start -= start % PAGE_SIZE
        end = min(end_of_object, (end + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE)
        if end > start:
            yield start, end
        offset = end


# ---- restore half: runs inside the stub --------------------------------

MFD_ALLOW_SEALING = 2
F_SEAL_SEAL = 1


class StubObjects:
    """Creates the shmem objects of the images inside the stub and keeps an
    fd to each (a "service fd") for the task's mappings and fds.

    memfds come back as memfds with their name; anonymous shared memory as a
    true anonymous shmem object (mapped MAP_SHARED|MAP_ANONYMOUS here, then
    reopened through /proc/self/map_files), so a later dump sees it as
    "/dev/zero (deleted)" again.
    """

    def __init__(self, images, inode_entries, floor):
        self.images = images
        self.inodes = {e.inode_id: e for e in inode_entries}
        self.floor = floor
        self.fds = {}          # inode_id -> service fd
        self._given = set()    # memfds whose own open file an fd of the tree has
        self._keep = []        # anonymous mappings backing the objects

    def create_all(self):
        """Every object of the images, before the tree is forked."""
        for inode_id in self.inodes:
            self.service_fd(inode_id)

    def service_fd(self, inode_id):
        if inode_id not in self.fds:
            self.fds[inode_id] = self._create(self.inodes[inode_id])
        return self.fds[inode_id]

    def _create(self, entry):
        import ctypes
        import mmap
        huge = entry.hugetlb_flag if entry.HasField("hugetlb_flag") else 0
        if entry.name.startswith("memfd:"):
            sealing = MFD_ALLOW_SEALING if entry.seals != F_SEAL_SEAL else 0
            fd = os.memfd_create(entry.name[len("memfd:"):], sealing | huge)
            os.ftruncate(fd, entry.size)
        else:
            # anonymous shmem (or hugetlb) comes back as such, not as a memfd
            size = max(entry.size, PAGE_SIZE)
            flags = mmap.MAP_SHARED
            if huge:
                flags |= V.MAP_HUGETLB | huge & ~V.MFD_HUGETLB
            area = mmap.mmap(-1, size, flags=flags)
            self._keep.append(area)
            address = ctypes.addressof(ctypes.c_char.from_buffer(area))
            end = address + size
            fd = os.open(f"/proc/self/map_files/{address:x}-{end:x}", os.O_RDWR)
        fd = high_dup(fd, self.floor)
        if entry.HasField("mode"):
            os.fchmod(fd, entry.mode & 0o7777)  # a memfd is made 0777; fchmod may change it
        if (entry.uid, entry.gid) != (os.getuid(), os.getgid()):
            os.fchown(fd, entry.uid, entry.gid)
        self._fill(fd, entry, huge)
        return fd

    def _fill(self, fd, entry, huge):
        if not self.images.exists("SHMEM_PAGEMAP", entry.shmid):
            return
        pagemap = self.images.pagemap(entry.shmid, shmem=True)
        chunks = self.images.pages_reader(pagemap).chunks()
        if huge:
            # hugetlbfs has no write(): its pages are filled through a mapping
            import mmap
            with mmap.mmap(fd, os.fstat(fd).st_size) as area:
                for offset, chunk in chunks:
                    area[offset:offset + len(chunk)] = chunk
            return
        write_chunks(fd, chunks)

    def reopen(self, inode_id, flags, pos, floor):
        """A new open file of an object, for an fd of the process.

        The first read-write one of a memfd is memfd_create's own file,
        not an open of it by path: memfd_create's file does not count as a
        writer of the inode, an open(O_RDWR) does, and exec'ing the memfd
        (fexecve) fails with ETXTBSY while the inode has writers."""
        source = self.service_fd(inode_id)
        entry = self.inodes[inode_id]
        if (inode_id not in self._given and flags & O_ACCMODE == os.O_RDWR
                and entry.name.startswith("memfd:")):
            self._given.add(inode_id)
            fd = os.dup(source)
            set_status_flags(fd, flags)
            os.lseek(fd, pos, os.SEEK_SET)
            return high_dup(fd, floor)
        fd = os.open(f"/proc/self/fd/{source}", flags & ~(O_CLOEXEC | os.O_CREAT | os.O_TRUNC))
        if pos:
            os.lseek(fd, pos, os.SEEK_SET)
        return high_dup(fd, floor)


def seal_objects(task, inode_entries, service_fds):
    """The memfds' seals, through the task's service fds (``service_fds``:
    str(inode_id) -> fd). Last, once the task's mappings exist: a sealed
    memfd refuses the writable shared mappings restore makes (F_SEAL_WRITE)."""
    for inode in inode_entries:
        fd = service_fds.get(str(inode.inode_id))
        if fd is not None and inode.name.startswith("memfd:") and inode.seals:
            task.syscall_raw("fcntl", fd, F_ADD_SEALS, inode.seals)


# ---- the kind: fds of a memfd (or of /dev/zero shared memory) ---------------

def is_shared_memory_fd(fd):
    return is_shmem_path(fd.link)


def dump_fd(table, fd):
    return table.shmem.fd(fd.link, fd.path, fd.flags, fd.pos, fd.owner())


def open_fd(stub, entry):
    return stub.shared.reopen(entry.memfd.inode_id, entry.memfd.flags, entry.memfd.pos,
                              stub.floor)


def map_fd(stub, entry, mode):
    """The object itself: the root stub's service fd of it."""
    return stub.shared.service_fd(entry.memfd.inode_id)


KIND = Kind(name="memfd", fd_type=FD_TYPES["MEMFD"], entry_field="memfd",
            match=is_shared_memory_fd, dump=dump_fd, check=nothing_to_check, open=open_fd,
            label=lambda entry: f"memfd inode #{entry.memfd.inode_id}", map_fd=map_fd)
