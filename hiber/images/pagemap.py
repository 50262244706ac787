"""pagemap-*.img and pages-*.img (spec §1.8).

A pagemap is a head entry naming ``pages-<pages_id>.img`` followed by
entries sorted by address.  The data of an entry with PE_PRESENT sits in the
pages file at 4096 x (sum of nr_pages of the earlier PE_PRESENT entries);
entries without PE_PRESENT (lazy holes, pages in the parent image) have no
data here.  Pages files can be many GiB: they are streamed, never loaded.
"""

import os
from dataclasses import dataclass

from ..errors import ImageError
from . import magic as M
from .framing import iter_entries, read_magic, write_entry, write_magic
from .messages import classes

PAGE_SIZE = 4096
PE_PARENT = 1 << 0
PE_LAZY = 1 << 1
PE_PRESENT = 1 << 2


@dataclass(frozen=True)
class PageRun:
    """One pagemap entry, normalised as CRIU's reader normalises it."""
    vaddr: int
    nr_pages: int
    flags: int
    pages_offset: int | None  # byte offset of the data in pages-N.img, if present

    @property
    def present(self):
        return bool(self.flags & PE_PRESENT)

    @property
    def end(self):
        return self.vaddr + self.nr_pages * PAGE_SIZE

    @property
    def size(self):
        return self.nr_pages * PAGE_SIZE


def normalise(entry):
    """(vaddr, nr_pages, flags) of a pagemap_entry, v4.2 rules (spec §1.8)."""
    if entry.HasField("in_parent") and entry.in_parent:
        flags = entry.flags | PE_PARENT
    elif not entry.HasField("flags"):
        flags = PE_PRESENT
    else:
        flags = entry.flags
    nr_pages = entry.nr_pages if entry.HasField("nr_pages") else entry.compat_nr_pages
    return entry.vaddr, nr_pages, flags


@dataclass
class Pagemap:
    path: str
    pages_id: int
    runs: list

    @property
    def present_pages(self):
        return sum(r.nr_pages for r in self.runs if r.present)


def read_pagemap(path, image_type=M.BY_NAME["PAGEMAP"]):
    """Read and check a pagemap: sorted, non-overlapping, page-aligned."""
    path = os.fspath(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise ImageError(path, None, f"cannot open: {e.strerror}") from None
    with f:
        found, offset = read_magic(f, path)
        if found.magic != image_type.magic:
            raise ImageError(path, 0, f"magic 0x{found.magic:08x} is not a pagemap's")
        entries = iter_entries(f, path, image_type, offset)
        head = next(entries, None)
        if head is None:
            raise ImageError(path, offset, "pagemap has no head entry")
        runs = []
        data_offset = 0
        previous_end = 0
        for e in entries:
            vaddr, nr_pages, flags = normalise(e.message)
            if vaddr % PAGE_SIZE:
                raise ImageError(path, e.offset, f"vaddr 0x{vaddr:x} is not page aligned")
            if vaddr < previous_end:
                raise ImageError(path, e.offset, f"entry at 0x{vaddr:x} overlaps or is out of "
                                 "order with the one before it")
            present = bool(flags & PE_PRESENT)
            runs.append(PageRun(vaddr, nr_pages, flags, data_offset if present else None))
            if present:
                data_offset += nr_pages * PAGE_SIZE
            previous_end = vaddr + nr_pages * PAGE_SIZE
        return Pagemap(path, head.message.pages_id, runs)


class PagesReader:
    """Streams the data of a pagemap's present runs from its pages file."""

    def __init__(self, pagemap, pages_path):
        self.pagemap = pagemap
        self.path = os.fspath(pages_path)
        expected = pagemap.present_pages * PAGE_SIZE
        try:
            actual = os.stat(self.path).st_size
        except OSError as e:
            raise ImageError(self.path, None, f"cannot open pages file: {e.strerror}") from None
        if actual != expected:
            raise ImageError(pagemap.path, None,
                             f"present pages add up to {expected} bytes but "
                             f"{os.path.basename(self.path)} holds {actual}")

    def chunks(self, chunk_size=4 << 20):
        """Yield (vaddr, memoryview) pieces of at most chunk_size bytes.

        One buffer is reused for every piece: the caller must consume a
        view before asking for the next one.  Memory use stays constant
        whatever the size of the pages file.
        """
        chunk_size = max(PAGE_SIZE, chunk_size - chunk_size % PAGE_SIZE)
        buffer = bytearray(chunk_size)
        view = memoryview(buffer)
        with open(self.path, "rb", buffering=0) as f:
            for run in self.pagemap.runs:
                if not run.present:
                    continue
                f.seek(run.pages_offset)
                done = 0
                while done < run.size:
                    n = min(chunk_size, run.size - done)
                    got = f.readinto(view[:n])
                    if got != n:
                        raise ImageError(self.path, run.pages_offset + done,
                                         "pages file ended early")
                    yield run.vaddr + done, view[:n]
                    done += n

    def read_range(self, start, size):
        """Dumped bytes of [start, start+size), which one present run holds."""
        run = next((r for r in self.pagemap.runs
                    if r.present and r.vaddr <= start and start + size <= r.end), None)
        if run is None:
            raise ImageError(self.pagemap.path, None,
                             f"no dumped pages hold 0x{start:x}-0x{start + size:x}")
        with open(self.path, "rb") as f:
            f.seek(run.pages_offset + start - run.vaddr)
            data = f.read(size)
        if len(data) != size:
            raise ImageError(self.path, run.pages_offset, "pages file ended early")
        return data

    def read(self, run):
        """The whole data of one present run, as bytes (for small runs)."""
        with open(self.path, "rb") as f:
            f.seek(run.pages_offset)
            data = f.read(run.size)
        if len(data) != run.size:
            raise ImageError(self.path, run.pages_offset, "pages file ended early")
        return data


class PagemapWriter:
    """Writes a pagemap and its pages file side by side.

    Runs added back to back with the same flags merge into one entry, as
    CRIU merges them.  Entries are written as v4.2 writes them: field 2
    (compat_nr_pages) 0, field 5 the count, flags always present.
    """

    def __init__(self, pagemap_path, pages_path, pages_id,
                 image_type=M.BY_NAME["PAGEMAP"]):
        self.pages_written = 0
        self._pending = None  # [vaddr, nr_pages, flags]
        self._last_end = 0
        self._map = open(pagemap_path, "wb")
        self._pages = open(pages_path, "wb") if pages_path else None
        write_magic(self._map, image_type)
        write_entry(self._map, classes["pagemap_head"](pages_id=pages_id))

    @property
    def pages_file(self):
        """The open pages file, for callers that put data in it themselves
        (splice, copy_file_range) before calling add() without data."""
        return self._pages

    def add(self, vaddr, nr_pages, flags, data=None):
        """Record nr_pages at vaddr.

        With PE_PRESENT, ``data`` (exactly nr_pages x 4096 bytes) is
        appended to the pages file; data=None means the caller has already
        appended it through ``pages_file``.
        """
        if vaddr < self._last_end:
            raise ValueError(f"pagemap entries must ascend: 0x{vaddr:x} after 0x{self._last_end:x}")
        if flags & PE_PRESENT:
            if data is not None:
                if len(data) != nr_pages * PAGE_SIZE:
                    raise ValueError("present pages need exactly nr_pages x 4096 bytes of data")
                self._pages.write(data)
            self.pages_written += nr_pages
        p = self._pending
        if p and p[0] + p[1] * PAGE_SIZE == vaddr and p[2] == flags:
            p[1] += nr_pages
        else:
            self._flush()
            self._pending = [vaddr, nr_pages, flags]
        self._last_end = vaddr + nr_pages * PAGE_SIZE

    def _flush(self):
        if self._pending:
            vaddr, nr_pages, flags = self._pending
            write_entry(self._map, classes["pagemap_entry"](
                vaddr=vaddr, compat_nr_pages=0, flags=flags, nr_pages=nr_pages))
            self._pending = None

    def close(self):
        self._flush()
        self._map.close()
        if self._pages:
            self._pages.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
