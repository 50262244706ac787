"""Feature probes: does this kernel have what hiber needs? (``hiber check``)

Each probe tries the real thing, on a child process of its own where it
needs one, and says what is lost when it is missing. Names follow
``criu check --feature`` where criu has the feature.
"""

import contextlib
import ctypes
import errno
import fcntl
import mmap
import os
import signal
import struct
import time
from dataclasses import dataclass

from . import ptrace as pt
from . import inet_diag, nftables, sock_diag, tcp_repair
from .sys import (KCMP_VM, TFD_IOC_SET_TICKS, address_of, can_name_anonymous_mappings, kcmp,
                  libc, pidfd_getfd, pidfd_open, process_vm_readv, syscall)


@dataclass(frozen=True)
class Probe:
    name: str
    consequence: str  # what does not work without it
    run: object       # callable(child_pid) -> detail text; raises on failure


class ProbeFailed(Exception):
    pass


@contextlib.contextmanager
def _stopped(child, options=0):
    """The child in a ptrace stop for the time of the with block."""
    pt.seize(child, options)
    try:
        pt.interrupt(child)
        kind, _ = pt.stop_kind(pt.wait(child))
        if kind != "event-stop":
            raise ProbeFailed(f"unexpected stop {kind}")
        yield
    finally:
        pt.detach(child)


def _seize(child):
    with _stopped(child):
        return "PTRACE_SEIZE + PTRACE_INTERRUPT"


def _vm_readv(child):
    buf = bytearray(8)
    marker = ctypes.c_uint64(0x1234)  # the child is a fork: same address
    if process_vm_readv(child, [(address_of(buf), 8)], [(ctypes.addressof(marker), 8)]) != 8:
        raise ProbeFailed("short read")
    return "6-8 GiB/s bulk reads"


def _pidfd(child):
    fd = pidfd_open(child)
    try:
        os.close(pidfd_getfd(fd, 0))
    finally:
        os.close(fd)
    return "pidfd_open + pidfd_getfd"


def _clone3_set_tid(child):
    from .clone import fork_with_pid
    wanted = 300
    while os.path.exists(f"/proc/{wanted}"):
        wanted += 1
    pid = fork_with_pid(wanted)
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    if pid != wanted:
        raise ProbeFailed(f"got PID {pid} instead of {wanted}")
    return "processes and threads get their dumped PIDs"


def _rseq_conf(child):
    with _stopped(child):
        pt.get_rseq_configuration(child)
    return "PTRACE_GET_RSEQ_CONFIGURATION"


def _pagemap_scan(child, category=1 << 3):
    from .pagescan import ScanUnsupported, scan
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        page = mmap.mmap(-1, 4096)
        page[0] = 1
        start = address_of(page)
        try:
            list(scan(fd, start, start + 4096, required=category, report=category))
        except ScanUnsupported as e:
            raise ProbeFailed(str(e)) from None
        finally:
            page.close()
    finally:
        os.close(fd)
    return "pages chosen by the kernel, ~3 ms per GiB"


def _guard_pages(child):
    _pagemap_scan(child, 1 << 8)  # PAGE_IS_GUARD
    return "MADV_GUARD_INSTALL regions are found and restored"


def _set_mm_map(child):
    size = ctypes.c_uint()
    # PR_SET_MM, PR_SET_MM_MAP_SIZE: asks the size of struct prctl_mm_map
    if libc.prctl(35, 15, ctypes.byref(size), 0, 0) != 0 or size.value != 104:
        raise ProbeFailed(f"PR_SET_MM_MAP_SIZE: {os.strerror(ctypes.get_errno())}")
    return "mm fields, auxv and exe file restored in one call"


def _timer_ids(child):
    # PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_GET
    if libc.prctl(77, 2, 0, 0, 0) < 0:
        raise ProbeFailed(os.strerror(ctypes.get_errno()))
    return "POSIX timers get their dumped ids"


def _kcmp(child):
    kcmp(os.getpid(), child, KCMP_VM)
    return "shared objects between processes are recognised"


def _kcmp_epoll(child):
    import select
    from .sys import is_epoll_target
    ep = select.epoll()
    r, w = os.pipe()
    try:
        ep.register(r, select.EPOLLIN)
        if not is_epoll_target(os.getpid(), r, os.getpid(), ep.fileno(), r):
            raise ProbeFailed("kcmp(KCMP_EPOLL_TFD) does not find an epoll's watch "
                              "(CONFIG_EPOLL or CONFIG_KCMP off)")
    finally:
        ep.close()
        os.close(r)
        os.close(w)
    return "an epoll's watched files are told apart"


def _seccomp_filters(child):
    with _stopped(child):
        try:
            pt.seccomp_filter(child, 0)
        except OSError as e:
            # EINVAL: the child is not in filter mode, ENOENT: no such filter;
            # both mean the request is known (an unknown one gives EIO)
            if e.errno not in (errno.EINVAL, errno.ENOENT):
                raise
    return "PTRACE_SECCOMP_GET_FILTER"


def _seccomp_suspend(child):
    with _stopped(child, pt.PTRACE_O_SUSPEND_SECCOMP):
        pass
    return "injected syscalls bypass the process's seccomp filters"


def _anon_vma_name(child):
    if not can_name_anonymous_mappings():
        raise ProbeFailed("prctl(PR_SET_VMA_ANON_NAME) refused (CONFIG_ANON_VMA_NAME is off)")
    return "names of anonymous mappings can be given back"


def _timerfd(child):
    fd = syscall("timerfd_create", 1, 0)  # CLOCK_MONOTONIC
    try:
        fcntl.ioctl(fd, TFD_IOC_SET_TICKS, struct.pack("<Q", 1))
    finally:
        os.close(fd)
    return "timerfd expirations not read yet can be given back"


def _memfd(child):
    os.close(os.memfd_create("hiber-probe"))
    return "memfd objects restored as memfds"


def _aio_remap(child):
    import ctypes
    import mmap as _mmap
    libc = ctypes.CDLL(None, use_errno=True)
    ctx = ctypes.c_ulong(0)
    if libc.syscall(206, 1, ctypes.byref(ctx)) < 0:  # io_setup
        raise ProbeFailed(f"io_setup: {os.strerror(ctypes.get_errno())}")
    try:
        libc.mremap.restype = ctypes.c_void_p
        moved = libc.mremap(ctypes.c_void_p(ctx.value), _mmap.PAGESIZE, _mmap.PAGESIZE, 1)
        if moved in (None, ctypes.c_void_p(-1).value):
            raise ProbeFailed("an AIO ring cannot be moved (mremap)")
        ctx.value = moved
    finally:
        libc.syscall(207, ctx)  # io_destroy
    return "AIO rings can be moved, so contexts are restored at their addresses"


def _fdinfo_lock(child):
    import fcntl
    import tempfile
    with tempfile.TemporaryFile() as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with open(f"/proc/self/fdinfo/{f.fileno()}") as info:
            if "lock:" not in info.read():
                raise ProbeFailed("fdinfo shows no locks (Linux < 4.1)")
    return "the locks held through an fd are listed in its fdinfo"


def _cgroupns(child):
    with open("/proc/self/cgroup") as f:
        if not f.read().strip():
            raise ProbeFailed("/proc/self/cgroup is empty")
    if not os.path.exists("/proc/self/ns/cgroup"):
        raise ProbeFailed("no cgroup namespaces")
    return "cgroup memberships and namespaces can be read"


def _timens(child):
    if not os.path.exists("/proc/self/ns/time"):
        raise ProbeFailed("no time namespaces")
    return "time namespaces exist"


def _ns_pid(child):
    # a task's PIDs in each nested PID namespace, outermost first
    if "NSpid:" not in open("/proc/self/status").read():
        raise ProbeFailed("/proc/PID/status has no NSpid line")
    return "a task's PID in every PID namespace is shown (NSpid)"


def _loginuid(child):
    # a task may write only its own loginuid: opening ours for writing
    # shows the file is there and writable, without changing it
    try:
        os.close(os.open("/proc/self/loginuid", os.O_WRONLY))
    except FileNotFoundError:
        raise ProbeFailed("no audit loginuid (CONFIG_AUDIT is off)") from None
    return "audit loginuid can be restored"


def _uprobes(child):
    if not os.path.exists("/sys/bus/event_source/devices/uprobe/type"):
        raise ProbeFailed("no uprobe PMU")
    return "uprobes (see --allow-uprobes)"


def _xstate(child):
    from .cpu import xstate_layout
    layout = xstate_layout()
    return "components " + ", ".join(f"{k}@{v[0]}" for k, v in sorted(layout.items()))


def _dirty_tracking(child):
    """Soft-dirty bits where the kernel has them; hiber itself tracks with
    userfaultfd asynchronous write-protection read through PAGEMAP_SCAN
    (resources/dirty.py), which works without them (kernel-facts)."""
    from . import uffd
    ways = []
    if uffd.async_wp_works():
        try:
            _pagemap_scan(child)
            ways.append("userfaultfd async write-protection + PAGEMAP_SCAN")
        except (OSError, ProbeFailed):
            pass
    # the config decides: with MEM_SOFT_DIRTY off, clear_refs accepts 4 and
    # does nothing (kernel-facts), so an error is no answer
    try:
        import gzip
        with gzip.open("/proc/config.gz", "rt") as f:
            if "CONFIG_MEM_SOFT_DIRTY=y" in f.read():
                ways.append("soft-dirty bits")
    except OSError:
        pass
    if not ways:
        raise ProbeFailed("neither soft-dirty bits nor userfaultfd asynchronous "
                          "write-protection: every dump copies all memory")
    return ", ".join(ways)


def _unix_diag(child):
    if not sock_diag.unix_diag_works():
        raise ProbeFailed("sock_diag does not describe unix sockets (CONFIG_UNIX_DIAG)")
    return "NETLINK_SOCK_DIAG, unix_diag"


def _nftables(child):
    try:
        return nftables.works()
    except nftables.NftError as e:
        raise ProbeFailed(f"nftables: {e}") from None


def _tcp_half_closed(child):
    """A connection shut down one way can still enter repair mode."""
    import socket
    with socket.socket() as listener, socket.socket() as client:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client.connect(listener.getsockname())
        client.shutdown(socket.SHUT_WR)
        try:
            tcp_repair.set_repair(client, True)
        except OSError as e:
            raise ProbeFailed(f"TCP_REPAIR on a half-closed connection: {e.strerror}") \
                from None
    return "TCP_REPAIR on half-closed connections"


def _net_diag_raw(child):
    if not inet_diag.raw_diag_works():
        raise ProbeFailed("sock_diag does not describe raw sockets (CONFIG_INET_RAW_DIAG)")
    return "inet_diag of raw sockets"


def _sockopt_buf_lock(child):
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.getsockopt(socket.SOL_SOCKET, 72)  # SO_BUF_LOCK, Linux 5.14
        except OSError as e:
            raise ProbeFailed(f"SO_BUF_LOCK: {e.strerror}") from None
    return "SO_BUF_LOCK"


def _ipv6_freebind(child):
    import socket
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        try:
            s.setsockopt(socket.IPPROTO_IPV6, 78, 1)  # IPV6_FREEBIND, Linux 4.15
        except OSError as e:
            raise ProbeFailed(f"IPV6_FREEBIND: {e.strerror}") from None
    return "IPV6_FREEBIND"


def _uffd(child):
    fd = syscall("userfaultfd", os.O_CLOEXEC | os.O_NONBLOCK)
    os.close(fd)
    return "userfaultfd()"


def _uffd_noncoop(child):
    from . import uffd
    fd = syscall("userfaultfd", os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        uffd.enable_missing(fd)
    finally:
        os.close(fd)
    return "fork, mremap, madvise and munmap events"


PROBES = [
    Probe("ptrace_seize", "no dump at all", _seize),
    Probe("process_vm_readv", "memory is read through /proc/PID/mem, slower", _vm_readv),
    Probe("pidfd_getfd", "no pipe data, no file owners", _pidfd),
    Probe("clone3_set_tid", "no restore: PIDs cannot be chosen", _clone3_set_tid),
    Probe("get_rseq_conf", "rseq registrations are lost", _rseq_conf),
    Probe("pagemap_scan", "pages are chosen from pagemap in Python, slower", _pagemap_scan),
    Probe("pagemap_scan_guard_pages", "guard regions are not dumped", _guard_pages),
    Probe("pr_set_mm_map", "no restore of mm fields and exe link", _set_mm_map),
    Probe("timer_restore_ids", "POSIX timers come back only if their ids are 0, 1, 2...",
          _timer_ids),
    Probe("kcmp", "shared fds/memory between processes are not recognised", _kcmp),
    Probe("kcmp_epoll", "no dump of an epoll instance", _kcmp_epoll),
    Probe("loginuid", "the audit loginuid of restored processes is hiber's", _loginuid),
    Probe("seccomp_filters", "seccomp filters cannot be dumped", _seccomp_filters),
    Probe("seccomp_suspend", "no dump of a process under a seccomp filter", _seccomp_suspend),
    Probe("unix_diag", "no dump of unix sockets", _unix_diag),
    Probe("timerfd", "timerfds with expirations not read yet cannot be restored", _timerfd),
    Probe("anon_vma_name", "images with named anonymous mappings cannot be restored",
          _anon_vma_name),
    Probe("memfd", "memfd mappings cannot be restored", _memfd),
    Probe("aio_remap", "no dump of a process with AIO contexts", _aio_remap),
    Probe("fdinfo_lock", "file locks cannot be dumped (--file-locks)", _fdinfo_lock),
    Probe("cgroupns", "no dump of a tree in a cgroup namespace of its own", _cgroupns),
    Probe("ns_pid", "the PIDs of tasks in nested PID namespaces cannot be read", _ns_pid),
    Probe("timens", "time namespaces are not available", _timens),
    Probe("uprobes", "nothing: only processes that use uprobes need it", _uprobes),
    Probe("xstate", "FPU/vector registers cannot be laid out", _xstate),
    Probe("mem_dirty_track", "no incremental dumps: every dump copies all memory",
          _dirty_tracking),
    Probe("uffd", "no lazy restore", _uffd),
    Probe("tcp_half_closed", "half-closed TCP connections cannot be dumped",
          _tcp_half_closed),
    Probe("net_diag_raw", "raw sockets are dumped without sock_diag (as unbound ones)",
          _net_diag_raw),
    Probe("sockopt_buf_lock", "SO_BUF_LOCK is not kept", _sockopt_buf_lock),
    Probe("ipv6_freebind", "IPV6_FREEBIND is not kept", _ipv6_freebind),
    Probe("network_lock_nftables", "TCP connections are not kept from the network between "
          "dump and restore", _nftables),
    Probe("uffd-noncoop", "a lazily restored process that forks or remaps memory may read "
          "zeros", _uffd_noncoop),
]


def _not_yet(what):
    """A feature criu's tests ask about that hiber does not have: asked, it
    says so (MISSING), rather than not knowing the name."""
    def probe(child):
        raise ProbeFailed(f"hiber does not {what} yet")
    return probe


# (name, what hiber lacks for it)
NOT_YET = [("userns", "checkpoint user namespaces"), ("autofs", "checkpoint autofs mounts"),
           ("mnt_id", "checkpoint mount namespaces"),
           ("move_mount_set_group", "checkpoint mount namespaces"),
           ("apparmor_stacking", "restore AppArmor namespaces"),
           ("tun", "checkpoint tun/tap devices"), ("tun_ns", "checkpoint tun/tap devices"),
           ("link_nsid", "checkpoint links between network namespaces"),
           ("newifindex", "checkpoint network links other than the loopback"),
           ("has_ipt_legacy", "use iptables (it locks the network with nftables)"),
           ("nftables", "restore nftables rules outside a network namespace of its own"),
           ("sk_unix_file", "check a unix socket's file by SIOCUNIXFILE (it asks sock_diag)"),
           ("memfd_hugetlb", "dump private mappings of hugetlb memfds")]
# answered when asked by name, not listed by a plain `hiber check`
BY_NAME = {p.name: p for p in PROBES}
BY_NAME.update((name, Probe(name, "the tests asking for it are skipped", _not_yet(what)))
               for name, what in NOT_YET)


def _child():
    pid = os.fork()
    if pid == 0:
        try:
            while True:
                time.sleep(3600)
        finally:
            os._exit(0)
    return pid


def run(names=None):
    """[(Probe, ok, detail)] for the named probes (default: all)."""
    probes = [BY_NAME[n] for n in names] if names else PROBES
    child = _child()
    results = []
    try:
        for probe in probes:
            try:
                results.append((probe, True, probe.run(child)))
            except (OSError, ProbeFailed, ValueError) as e:
                results.append((probe, False, str(e)))
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    return results
