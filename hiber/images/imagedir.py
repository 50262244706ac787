"""An image directory: open images by type and key, list them, check them."""

import os
from dataclasses import dataclass

from ..errors import ImageError
from . import magic as M
from .framing import read_image, write_image
from .pagemap import PagemapWriter, PagesReader, read_pagemap


@dataclass(frozen=True)
class ImageFileInfo:
    name: str
    type: M.ImageType | None  # None: not an image hiber knows (logs, ...)
    key: int | None
    size: int


class ImageDir:
    def __init__(self, path, create=False):
        self.path = os.fspath(path)
        # a dump with --page-server sends its pages there (pages/server.py)
        self.page_server = None
        if create:
            os.makedirs(self.path, exist_ok=True)
        elif not os.path.isdir(self.path):
            raise ImageError(self.path, None, "not an image directory (no such directory)")

    def file_path(self, type_name, key=None):
        image_type = M.BY_NAME[type_name]
        return os.path.join(self.path, image_type.file_name(key))

    def exists(self, type_name, key=None):
        return os.path.exists(self.file_path(type_name, key))

    def files(self):
        """Every file in the dir, with its image type where it has one."""
        out = []
        for name in sorted(os.listdir(self.path)):
            full = os.path.join(self.path, name)
            if not os.path.isfile(full):
                continue
            image_type, key = M.type_of_file_name(name)
            out.append(ImageFileInfo(name, image_type, key, os.path.getsize(full)))
        return out

    def keys(self, type_name):
        return sorted(f.key for f in self.files()
                      if f.type is not None and f.type.name == type_name)

    def read(self, type_name, key=None):
        """All entries' messages of an image."""
        image = read_image(self.file_path(type_name, key), M.BY_NAME[type_name])
        return [e.message for e in image.entries]

    def read_entries(self, type_name, key=None):
        """All entries, with their extra payloads and offsets."""
        return read_image(self.file_path(type_name, key), M.BY_NAME[type_name]).entries

    def read_one(self, type_name, key=None):
        path = self.file_path(type_name, key)
        entries = self.read(type_name, key)
        if len(entries) != 1:
            raise ImageError(path, None, f"expected exactly one entry, found {len(entries)}")
        return entries[0]

    def read_optional(self, type_name, key=None, default=()):
        """Entries of an image CRIU writes only when it has something to say."""
        if not self.exists(type_name, key):
            return list(default)
        return self.read(type_name, key)

    def inventory(self):
        return self.read_one("INVENTORY")

    def write(self, type_name, key, entries):
        write_image(self.file_path(type_name, key), M.BY_NAME[type_name], entries)

    def write_stats(self, file_name, stats_entry):
        write_image(os.path.join(self.path, file_name), M.BY_NAME["STATS"], [stats_entry])

    # ---- memory ---------------------------------------------------------

    def pagemap(self, key, shmem=False):
        type_name = "SHMEM_PAGEMAP" if shmem else "PAGEMAP"
        return read_pagemap(self.file_path(type_name, key), M.BY_NAME[type_name])

    def pages_reader(self, pagemap):
        """A streaming reader; checks the pages file size against the pagemap."""
        return PagesReader(pagemap, self.file_path("PAGES", pagemap.pages_id))

    def pagemap_writer(self, key, pages_id, shmem=False):
        if self.page_server is not None:
            # pages go to a page server, which numbers its pages files itself
            return self.page_server.pagemap_writer(key, shmem)
        type_name = "SHMEM_PAGEMAP" if shmem else "PAGEMAP"
        return PagemapWriter(self.file_path(type_name, key),
                             self.file_path("PAGES", pages_id), pages_id,
                             M.BY_NAME[type_name])
