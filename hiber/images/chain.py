"""Pages that live in a parent image (incremental dumps, spec §1.8).

An entry flagged PE_PARENT has no data in its own pages file: the same
range is in the pagemap of the same process in the ``parent`` directory
(a symlink CRIU and hiber leave, relative to the images dir), present
there or, in turn, in that one's parent.

A restore reads one pages file per process with every run present (the
stubs, the copy-on-write premaps and the vdso all read by offset), so a
chain is resolved once, at planning time, into a file of its own: an
O_TMPFILE next to the images, which vanishes with its last descriptor, so
a restore that fails leaves nothing behind. The data is moved with
copy_file_range, in the kernel (shared extents where the filesystem can).
"""

import os
from dataclasses import replace

from ..errors import ImageError
from .pagemap import PE_LAZY, PE_PARENT, PE_PRESENT, Pagemap, PageRun, read_pagemap

PARENT_LINK = "parent"
MAX_DEPTH = 64  # a loop of parent links is a broken chain, not a long one


def has_parent_runs(pagemap):
    return any(r.flags & PE_PARENT for r in pagemap.runs)


class ResolvedPages:
    """A process's pagemap with every run present, and the file holding the
    data; ``path`` opens it from any process of ours (stubs included)."""

    def __init__(self, pagemap, path, fd=None):
        self.pagemap = pagemap
        self.path = path
        self._fd = fd

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def resolve(images_path, pagemap, pages_path, key, depth=0, keep_lazy=False):
    """A ResolvedPages for ``pagemap`` (its data in ``pages_path``): itself
    when no run is in a parent, else a merged temporary file. With
    ``keep_lazy`` (a lazy restore), pages the chain holds as lazy are not
    copied: they stay PE_LAZY runs without data, for the lazy-pages daemon,
    which reads them where they are (locate)."""
    if not has_parent_runs(pagemap):
        return ResolvedPages(pagemap, pages_path)
    if depth >= MAX_DEPTH:
        raise ImageError(pagemap.path, None, f"more than {MAX_DEPTH} parent images: the "
                         "parent links loop")
    link = os.path.join(images_path, PARENT_LINK)
    if not os.path.isdir(link):
        raise ImageError(pagemap.path, None, "pages are in a parent image, but "
                         f"{images_path} has no {PARENT_LINK} directory: restore from the "
                         "images dir the chain was dumped into")
    parent_dir = os.path.realpath(link)
    parent_map_path = os.path.join(parent_dir, os.path.basename(pagemap.path))
    if not os.path.exists(parent_map_path):
        raise ImageError(pagemap.path, None, f"pages are in a parent image, but {parent_dir} "
                         f"has no {os.path.basename(pagemap.path)}: the parent is of "
                         "another tree")
    parent_map = read_pagemap(parent_map_path)
    parent = resolve(parent_dir, parent_map,
                     os.path.join(parent_dir, f"pages-{parent_map.pages_id}.img"), key,
                     depth + 1, keep_lazy)
    try:
        return _merge(images_path, pagemap, pages_path, parent, keep_lazy)
    finally:
        parent.close()


def _open_temporary(directory):
    try:
        return os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o600)
    except OSError:
        # a filesystem without O_TMPFILE: memory, which also leaves nothing
        return os.memfd_create("hiber-pages", os.MFD_CLOEXEC)


def _merge(images_path, pagemap, pages_path, parent, keep_lazy):
    out = _open_temporary(images_path)
    try:
        runs = []
        offset = 0
        with open(pages_path, "rb") as own, open(parent.path, "rb") as theirs:
            parent_runs = [r for r in parent.pagemap.runs
                           if r.present or (keep_lazy and r.flags & PE_LAZY)]
            i = 0
            for r in pagemap.runs:
                if r.present:
                    _copy(own.fileno(), r.pages_offset, out, offset, r.size, pages_path)
                    runs.append(replace(r, pages_offset=offset))
                    offset += r.size
                    continue
                if not r.flags & PE_PARENT:
                    runs.append(r)  # a lazy hole: no data anywhere
                    continue
                position = r.vaddr
                while position < r.end:
                    while i < len(parent_runs) and parent_runs[i].end <= position:
                        i += 1
                    if i == len(parent_runs) or parent_runs[i].vaddr > position:
                        raise ImageError(pagemap.path, None, f"pages at 0x{position:x} are "
                                         "in no image of the parent chain")
                    p = parent_runs[i]
                    stop = min(p.end, r.end)
                    size = stop - position
                    if keep_lazy and p.flags & PE_LAZY:
                        runs.append(PageRun(position, size // 4096, PE_LAZY, None))
                        position = stop
                        continue
                    _copy(theirs.fileno(), p.pages_offset + position - p.vaddr, out, offset,
                          size, parent.path)
                    flags = PE_PRESENT | (p.flags & PE_LAZY)
                    runs.append(PageRun(position, size // 4096, flags, offset))
                    offset += size
                    position = stop
        merged = Pagemap(pagemap.path, pagemap.pages_id, runs)
        return ResolvedPages(merged, f"/proc/{os.getpid()}/fd/{out}", out)
    except BaseException:
        os.close(out)
        raise


def _copy(src, src_offset, dst, dst_offset, size, src_path):
    while size:
        n = os.copy_file_range(src, dst, size, src_offset, dst_offset)
        if n == 0:
            raise ImageError(src_path, src_offset, "pages file ended early")
        src_offset += n
        dst_offset += n
        size -= n


def locate(images_path, pagemap, pages_path, depth=0):
    """Where the data of each page of ``pagemap`` is, through the parent
    chain, without copying: (start, end, pages file path, offset) ascending.
    Pages a dump --lazy-pages kept back are in none of them."""
    if depth >= MAX_DEPTH:
        raise ImageError(pagemap.path, None, f"more than {MAX_DEPTH} parent images: the "
                         "parent links loop")
    out = []
    parent = None
    i = 0  # runs ascend, and so does the parent's list: one walk over both
    for r in pagemap.runs:
        if r.present:
            out.append((r.vaddr, r.end, pages_path, r.pages_offset))
        elif r.flags & PE_PARENT:
            if parent is None:
                parent_dir = os.path.realpath(os.path.join(images_path, PARENT_LINK))
                parent_map = read_pagemap(os.path.join(parent_dir,
                                                       os.path.basename(pagemap.path)))
                parent = locate(parent_dir, parent_map,
                                os.path.join(parent_dir, f"pages-{parent_map.pages_id}.img"),
                                depth + 1)
            while i < len(parent) and parent[i][1] <= r.vaddr:
                i += 1
            j = i
            while j < len(parent) and parent[j][0] < r.end:
                start, end, path, offset = parent[j]
                lo, hi = max(start, r.vaddr), min(end, r.end)
                if lo < hi:
                    out.append((lo, hi, path, offset + lo - start))
                j += 1
    return out
