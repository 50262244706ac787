"""Real uprobes for tests, through tracefs (kernel-facts: uprobes)."""

import os
import struct
import subprocess
import time

from elftools.elf.elffile import ELFFile

TRACEFS = "/sys/kernel/tracing"
GROUP = "hiber_test"


def ensure_tracefs():
    if not os.path.exists(f"{TRACEFS}/uprobe_events"):
        subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS], check=True,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30)


def file_offset_of(binary, symbol):
    """File offset of a function, as uprobes want it (.symtab, or .dynsym for
    stripped shared libraries such as libc)."""
    with open(binary, "rb") as f:
        elf = ELFFile(f)
        table = elf.get_section_by_name(".symtab") or elf.get_section_by_name(".dynsym")
        address = next(s["st_value"] for s in table.iter_symbols()
                       if s.name == symbol and s["st_value"])
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_LOAD" and \
                    seg["p_vaddr"] <= address < seg["p_vaddr"] + seg["p_memsz"]:
                return address - seg["p_vaddr"] + seg["p_offset"]
    raise LookupError(f"{symbol} is in no loadable segment of {binary}")


def _append(path, text):
    # Python's open(..., "a") fails with EINVAL on uprobe_events (kernel-facts)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class TracefsUprobe:
    """A uprobe on BINARY:SYMBOL, enabled for as long as the with block."""

    def __init__(self, binary, symbol, name):
        self.binary, self.symbol = str(binary), symbol
        self.name = name
        self.event = f"{GROUP}/{name}"

    def __enter__(self):
        ensure_tracefs()
        offset = file_offset_of(self.binary, self.symbol)
        _append(f"{TRACEFS}/uprobe_events", f"p:{self.event} {self.binary}:{offset:#x}\n")
        try:
            with open(f"{TRACEFS}/events/{self.event}/enable", "w") as f:
                f.write("1")
        except BaseException:
            _append(f"{TRACEFS}/uprobe_events", f"-:{self.event}\n")
            raise
        return self

    def hits(self):
        with open(f"{TRACEFS}/uprobe_profile") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[1] in (self.name, self.event):
                    return int(parts[2])
        return 0

    def __exit__(self, *exc):
        with open(f"{TRACEFS}/events/{self.event}/enable", "w") as f:
            f.write("0")
        _append(f"{TRACEFS}/uprobe_events", f"-:{self.event}\n")


PERF_EVENT_OPEN = 298


def online_cpus():
    cpus = []
    with open("/sys/devices/system/cpu/online") as f:
        for part in f.read().strip().split(","):
            first, _, last = part.partition("-")
            cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


class PerfUprobe:
    """A uprobe through perf_event_open on the uprobe PMU, counting hits.

    For one task (``pid``): the breakpoint goes in at open time, in that
    task's mm only (kernel-facts), and it dies with that task. With
    ``pid=None``, system-wide: one event per CPU, armed in every process that
    maps the file, as a tracefs probe is."""

    def __init__(self, pid, binary, symbol):
        self.pid, self.binary, self.symbol = pid, str(binary), symbol
        self.fds = []

    def __enter__(self):
        import ctypes
        with open("/sys/bus/event_source/devices/uprobe/type") as f:
            pmu_type = int(f.read())
        path = ctypes.create_string_buffer(self.binary.encode())
        attr = bytearray(128)  # struct perf_event_attr, PERF_ATTR_SIZE_VER7
        struct.pack_into("<IIQ", attr, 0, pmu_type, len(attr), 0)
        struct.pack_into("<QQ", attr, 56, ctypes.addressof(path),  # config1: uprobe_path
                         file_offset_of(self.binary, self.symbol))  # config2: probe_offset
        buf = ctypes.create_string_buffer(bytes(attr), len(attr))
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        targets = [(self.pid, -1)] if self.pid is not None else \
            [(-1, cpu) for cpu in online_cpus()]
        try:
            for pid, cpu in targets:
                fd = libc.syscall(PERF_EVENT_OPEN, buf, pid, cpu, -1, 8)  # FD_CLOEXEC
                if fd < 0:
                    raise OSError(ctypes.get_errno(), f"perf_event_open {self.symbol}")
                self.fds.append(fd)
        except BaseException:
            self.__exit__()
            raise
        return self

    def hits(self):
        return sum(struct.unpack("<Q", os.read(fd, 8))[0] for fd in self.fds)

    def __exit__(self, *exc):
        while self.fds:
            os.close(self.fds.pop())


def wait_for_uprobes_mapping(pid, timeout=10):
    """The kernel maps [uprobes] at the first hit of a probe."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/maps") as f:
            if "[uprobes]" in f.read():
                return
        time.sleep(0.01)
    raise AssertionError(f"PID {pid} never got a [uprobes] mapping")
