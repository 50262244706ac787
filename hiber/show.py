"""A human summary of an image dir, for ``hiber show DIR``.

It sits above the resources, not in images/: naming an open file in words
("pipe:[563989] (write end)") is each kind's own knowledge, asked of the
kinds table, and images/ (the format alone) must not reach up for it.
"""

import bisect

from .images.imagedir import ImageDir
from .images.pagemap import PAGE_SIZE
from .images.vma import kind_of, prot_text
from .resources.files import KINDS
from .resources.files.table import FD_TYPE_NAMES

TASK_STATES = {1: "running", 2: "zombie", 3: "stopped"}


def _file_label(files, file_id):
    f = files.get(file_id)
    if f is None:
        return f"file #{file_id} (missing from files.img)"
    return KINDS.label(f)


def _pages_in(runs, starts, start, end):
    """Present pages of sorted runs that fall inside [start, end)."""
    total = 0
    i = max(0, bisect.bisect_right(starts, start) - 1)
    while i < len(runs) and runs[i].vaddr < end:
        r = runs[i]
        if r.present:
            lo, hi = max(r.vaddr, start), min(r.end, end)
            if hi > lo:
                total += (hi - lo) // PAGE_SIZE
        i += 1
    return total


def summarise(path):
    d = ImageDir(path)
    inv = d.inventory()
    tree = d.read("PSTREE")
    files = {f.id: f for f in d.read_optional("FILES")}
    lines = [f"Image dir {d.path}",
             f"  image version {inv.img_version}"
             + (f", dump run {inv.dump_criu_run_id}" if inv.HasField("dump_criu_run_id") else "")
             + (", dumped with --allow-uprobes" if inv.allow_uprobes else "")]

    children = {}
    for p in tree:
        children.setdefault(p.ppid, []).append(p)
    lines.append("Process tree:")

    def walk(p, depth):
        threads = " ".join(str(t) for t in p.threads)
        lines.append(f"  {'  ' * depth}{p.pid}  pgid {p.pgid}  sid {p.sid}  threads: {threads}")
        for c in children.get(p.pid, []):
            walk(c, depth + 1)

    for root in children.get(0, []):
        walk(root, 0)

    total_pages = 0
    for p in tree:
        core = d.read_one("CORE", p.pid)
        tc = core.tc
        state = TASK_STATES.get(tc.task_state, f"state {tc.task_state}")
        lines.append(f"Task {p.pid} \"{tc.comm}\" ({state}, {len(p.threads)} thread(s))")
        if tc.task_state == 2:
            status = tc.exit_code  # wait() form
            how = (f"killed by signal {status & 0x7f}" if status & 0x7f
                   else f"exited with status {status >> 8}")
            lines.append(f"  zombie: {how}, not reaped yet")
            continue
        mm = d.read_one("MM", p.pid)
        pagemap = d.pagemap(p.pid)
        d.pages_reader(pagemap)  # checks the pages file holds what the pagemap says
        runs = pagemap.runs
        starts = [r.vaddr for r in runs]
        lines.append("  VMAs:")
        for v in mm.vmas:
            kind = kind_of(v)
            backing = ""
            if v.shmid and kind.startswith(("file", "memfd")):
                backing = "  " + _file_label(files, v.shmid)
            pages = _pages_in(runs, starts, v.start, v.end)
            dumped = f"  {pages} page(s) dumped" if pages else ""
            lines.append(f"    {v.start:012x}-{v.end:012x} {prot_text(v.prot)} {kind:<13}"
                         f"{backing}{dumped}")
        task_pages = pagemap.present_pages
        total_pages += task_pages
        ids = d.read_one("IDS", p.pid)
        lines.append(f"  fds (fdinfo-{ids.files_id}.img):")
        for fd in d.read_optional("FDINFO", ids.files_id):
            cloexec = " cloexec" if fd.flags & 1 else ""
            lines.append(f"    {fd.fd:>4} {FD_TYPE_NAMES.get(fd.type, fd.type):<6} "
                         f"{_file_label(files, fd.id)}{cloexec}")
        lines.append(f"  memory: {task_pages} page(s) in pages-{pagemap.pages_id}.img")

    for key in d.keys("SHMEM_PAGEMAP"):
        shmem = d.pagemap(key, shmem=True)
        d.pages_reader(shmem)
        total_pages += shmem.present_pages
    threads = sum(len(p.threads) for p in tree)
    lines.append(f"Totals: {len(tree)} process(es), {threads} thread(s), {total_pages} page(s) "
                 f"= {total_pages * PAGE_SIZE} bytes of memory dumped")
    return "\n".join(lines)
