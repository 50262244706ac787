"""Thin ptrace wrappers (x86-64). Policy lives in hiber.inject."""

import ctypes
import os
import struct

from .sys import _errcheck, iovec, libc

_ptrace = libc.ptrace
_ptrace.restype = ctypes.c_long
_ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]

PTRACE_PEEKDATA = 2
PTRACE_CONT = 7
PTRACE_KILL = 8
PTRACE_DETACH = 17
PTRACE_SYSCALL = 24
PTRACE_GET_THREAD_AREA = 25
PTRACE_SET_THREAD_AREA = 26
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETSIGINFO = 0x4202
PTRACE_GETREGSET = 0x4204
PTRACE_SETREGSET = 0x4205
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208
PTRACE_PEEKSIGINFO = 0x4209
PTRACE_GETSIGMASK = 0x420a
PTRACE_SETSIGMASK = 0x420b
PTRACE_SECCOMP_GET_FILTER = 0x420c
PTRACE_SECCOMP_GET_METADATA = 0x420d
PTRACE_GET_RSEQ_CONFIGURATION = 0x420f

PTRACE_O_TRACESYSGOOD = 1
PTRACE_O_TRACECLONE = 8
PTRACE_O_EXITKILL = 0x100000
PTRACE_O_SUSPEND_SECCOMP = 0x200000
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_STOP = 128
PTRACE_PEEKSIGINFO_SHARED = 1

NT_PRSTATUS = 1
NT_PRFPREG = 2
NT_X86_XSTATE = 0x202

WALL = 0x40000000  # __WALL: wait for threads too
SIGTRAP = 5

# user_regs_struct, in the order the kernel lays it out (and CRIU's image)
GPREG_NAMES = ["r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8",
               "ax", "cx", "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp",
               "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs"]
GPREG = {name: i for i, name in enumerate(GPREG_NAMES)}
Regs = ctypes.c_ulonglong * len(GPREG_NAMES)


def ptrace(request, pid, addr=0, data=0):
    return _errcheck(_ptrace(request, pid, addr, data))


def seize(tid, options=0):
    ptrace(PTRACE_SEIZE, tid, 0, options)


def interrupt(tid):
    ptrace(PTRACE_INTERRUPT, tid)


def set_options(tid, options):
    ptrace(PTRACE_SETOPTIONS, tid, 0, options)


def event_message(tid):
    msg = ctypes.c_ulong()
    ptrace(PTRACE_GETEVENTMSG, tid, 0, ctypes.addressof(msg))
    return msg.value


def detach(tid, sig=0):
    ptrace(PTRACE_DETACH, tid, 0, sig)


def cont(tid, sig=0):
    ptrace(PTRACE_CONT, tid, 0, sig)


def listen(tid):
    ptrace(PTRACE_LISTEN, tid)


def resume_to_syscall(tid, sig=0):
    """PTRACE_SYSCALL: run until the next syscall entry or exit stop.

    hiber never single-steps: a tracee left with the trap flag by a tracer
    that dies is killed by SIGTRAP after one instruction, because the kernel
    detaches the tracees of a dead tracer without clearing single-step
    (exit_ptrace skips ptrace_disable), while syscall tracing is cleared on
    every unlink (__ptrace_unlink clears SYSCALL_TRACE)."""
    ptrace(PTRACE_SYSCALL, tid, 0, sig)


def wait(tid):
    """waitpid with __WALL (threads are not our children in the usual sense)."""
    while True:
        try:
            return os.waitpid(tid, WALL)[1]
        except InterruptedError:
            continue


def get_regset(tid, note, size):
    """Raw bytes of a register set; the length is what the kernel returned."""
    buf = ctypes.create_string_buffer(size)
    io = iovec(ctypes.addressof(buf), size)
    ptrace(PTRACE_GETREGSET, tid, note, ctypes.addressof(io))
    return buf.raw[:io.iov_len]


def set_regset(tid, note, data):
    buf = ctypes.create_string_buffer(bytes(data), len(data))
    io = iovec(ctypes.addressof(buf), len(data))
    ptrace(PTRACE_SETREGSET, tid, note, ctypes.addressof(io))


def get_regs(tid):
    regs = Regs()
    io = iovec(ctypes.addressof(regs), ctypes.sizeof(regs))
    ptrace(PTRACE_GETREGSET, tid, NT_PRSTATUS, ctypes.addressof(io))
    return regs


def set_regs(tid, regs):
    io = iovec(ctypes.addressof(regs), ctypes.sizeof(regs))
    ptrace(PTRACE_SETREGSET, tid, NT_PRSTATUS, ctypes.addressof(io))


def get_sigmask(tid):
    mask = ctypes.c_uint64()
    ptrace(PTRACE_GETSIGMASK, tid, 8, ctypes.addressof(mask))
    return mask.value


def set_sigmask(tid, mask):
    value = ctypes.c_uint64(mask)
    ptrace(PTRACE_SETSIGMASK, tid, 8, ctypes.addressof(value))


class peeksiginfo_args(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("flags", ctypes.c_uint32),
                ("nr", ctypes.c_int32)]


SIGINFO_SIZE = 128


def is_syscall_stop(tid):
    """Whether a SIGTRAP stop is a syscall stop (for tracees seized without
    PTRACE_O_TRACESYSGOOD): the kernel reports those with si_code SIGTRAP,
    where a real SIGTRAP has SI_KERNEL, TRAP_* or SI_USER codes."""
    info = ctypes.create_string_buffer(SIGINFO_SIZE)
    ptrace(PTRACE_GETSIGINFO, tid, 0, ctypes.addressof(info))
    return struct.unpack_from("<iii", info.raw)[2] == SIGTRAP


def peek_siginfos(tid, shared):
    """Every queued siginfo (128 raw bytes each), without dequeuing them."""
    out = []
    batch = 32
    buf = ctypes.create_string_buffer(SIGINFO_SIZE * batch)
    while True:
        args = peeksiginfo_args(len(out), PTRACE_PEEKSIGINFO_SHARED if shared else 0, batch)
        n = ptrace(PTRACE_PEEKSIGINFO, tid, ctypes.addressof(args), ctypes.addressof(buf))
        for i in range(n):
            out.append(buf.raw[i * SIGINFO_SIZE:(i + 1) * SIGINFO_SIZE])
        if n < batch:
            return out


class rseq_configuration(ctypes.Structure):
    _fields_ = [("rseq_abi_pointer", ctypes.c_uint64), ("rseq_abi_size", ctypes.c_uint32),
                ("signature", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("pad", ctypes.c_uint32)]


def get_rseq_configuration(tid):
    conf = rseq_configuration()
    ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, ctypes.sizeof(conf), ctypes.addressof(conf))
    return conf


class user_desc(ctypes.Structure):
    _fields_ = [("entry_number", ctypes.c_uint32), ("base_addr", ctypes.c_uint32),
                ("limit", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


def get_thread_area(tid, entry):
    desc = user_desc()
    ptrace(PTRACE_GET_THREAD_AREA, tid, entry, ctypes.addressof(desc))
    return desc


def seccomp_filter(tid, index):
    """Raw sock_filter program of a task's filter number ``index``: 0 is the
    oldest, the first installed (kernel get_nth_filter(); ptrace(2) says otherwise)."""
    count = ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index, 0)
    buf = ctypes.create_string_buffer(count * 8)
    ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index, ctypes.addressof(buf))
    return buf.raw


def seccomp_filter_flags(tid, index):
    meta = struct.pack("<QQ", index, 0)
    buf = ctypes.create_string_buffer(meta, 16)
    ptrace(PTRACE_SECCOMP_GET_METADATA, tid, 16, ctypes.addressof(buf))
    return struct.unpack("<QQ", buf.raw)[1]


def stop_kind(status):
    """Classify a waitpid status of a traced task.

    Returns ("exited", code), ("killed", sig), ("event-stop", sig) for a
    PTRACE_EVENT_STOP (interrupt or group stop), ("syscall-stop", SIGTRAP)
    for a syscall entry or exit stop of a tracee seized with
    PTRACE_O_TRACESYSGOOD, or ("signal-stop", sig).
    """
    if os.WIFEXITED(status):
        return "exited", os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return "killed", os.WTERMSIG(status)
    sig = os.WSTOPSIG(status)
    if status >> 16 == PTRACE_EVENT_STOP:
        return "event-stop", sig
    if status >> 16 == PTRACE_EVENT_CLONE:
        return "clone-event", sig
    if sig == SIGTRAP | 0x80:
        return "syscall-stop", SIGTRAP
    return "signal-stop", sig
