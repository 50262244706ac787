"""criu dedup and --auto-dedup: once a newer image holds a page, the copy
in its parent images is never read again by a restore from the newer one,
so its blocks are freed (a hole punched, the file's size kept, as CRIU
does). The parent then can no longer be restored on its own: dedup is for
a chain whose older images serve only as parents.

A page the newer image leaves to its parent (PE_PARENT) is kept, and so is
every page of the parent the newer image does not have at all."""

import logging
import os

from ..images.chain import PARENT_LINK
from ..images.pagemap import PAGE_SIZE, PE_PARENT, read_pagemap
from ..kernel.sys import punch_hole

log = logging.getLogger(__name__)


def dedup(images_path):
    """Free, in the parent chain of ``images_path``, the pages its own
    pagemaps hold. Returns the number of pages freed."""
    freed = 0
    for name in sorted(os.listdir(images_path)):
        if name.startswith("pagemap-") and name.endswith(".img"):
            pagemap = read_pagemap(os.path.join(images_path, name))
            ranges = [(r.vaddr, r.end) for r in pagemap.runs if r.present]
            freed += _free_in_parents(images_path, name, ranges)
    log.info("Deduplication: %d page(s) freed in the parent images", freed)
    return freed


def _free_in_parents(images_path, name, ranges, depth=0):
    """Punch ``ranges`` out of the parent's pages file of pagemap ``name``;
    what the parent itself left to its own parent, out of that one."""
    parent_dir = os.path.join(images_path, PARENT_LINK)
    parent_map_path = os.path.join(parent_dir, name)
    if not ranges or depth > 64 or not os.path.exists(parent_map_path):
        return 0
    parent = read_pagemap(parent_map_path)
    pages_path = os.path.join(parent_dir, f"pages-{parent.pages_id}.img")
    freed = 0
    deeper = []
    fd = os.open(pages_path, os.O_WRONLY)
    try:
        i = 0
        for lo, hi in ranges:  # both ascend: one walk
            while i < len(parent.runs) and parent.runs[i].end <= lo:
                i += 1
            j = i
            while j < len(parent.runs) and parent.runs[j].vaddr < hi:
                r = parent.runs[j]
                a, b = max(lo, r.vaddr), min(hi, r.end)
                if a < b:
                    if r.present:
                        punch_hole(fd, r.pages_offset + a - r.vaddr, b - a)
                        freed += (b - a) // PAGE_SIZE
                    elif r.flags & PE_PARENT:
                        deeper.append((a, b))
                j += 1
    finally:
        os.close(fd)
    return freed + _free_in_parents(parent_dir, name, deeper, depth + 1)
