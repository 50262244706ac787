"""Run syscalls inside a stopped thread, harmless to it even if hiber dies.

Instead of writing ``syscall; int3`` into the task as CRIU's compel does, we
point the thread at instructions it already has and stop it at syscall
entry and exit (PTRACE_SYSCALL). Nothing is written into the task's code,
so no text page gets COWed by the dump (CRIU's injection leaves one, spec
§1.8) and other threads can never run half-written code.

hiber may die at any instant (SIGKILL, the OOM killer): the kernel then
detaches its tracees and lets them run from wherever they are. So a thread
must at every instant be in a state it can run on from unharmed:

* Never single-step: the kernel detaches the tracees of a dead tracer
  without clearing the trap flag, and the thread dies of SIGTRAP one
  instruction later. Syscall stops leave nothing behind (__ptrace_unlink
  clears syscall tracing), and with PTRACE_O_TRACESYSGOOD a thread left in
  one is sent no signal.
* Parking (the normal mode of a dump): on entry, a signal frame holding the
  thread's own registers, FPU state and mask goes below its stack (see
  sigframe.py), and between syscalls the thread sits on an ``rt_sigreturn``
  (``mov $15, %rax; syscall``, found in the task: libc's __restore_rt) with
  rsp on that frame. Each injected syscall starts as that rt_sigreturn: at
  its syscall-entry stop we turn it into our call and point the thread back
  at the rt_sigreturn, so even a thread whose tracer vanishes in the middle
  of a call finishes the call and then puts itself back as it was.
* Where a frame cannot be used (no writable stack below the stack pointer,
  no rt_sigreturn instruction in the task, a shadow stack, a seccomp filter
  that would not let the thread run rt_sigreturn), the thread's own
  registers and mask are put back after every single syscall instead:
  hiber dying during one call can then still harm it.
* A thread seized with PTRACE_O_EXITKILL (restore's stubs) dies with hiber
  anyway: its calls run without any of this (``killed_with_tracer``).

The thread's CPU affinity is never touched. On exit the thread is back in a
PTRACE_INTERRUPT stop with exactly its own registers and mask, so the
kernel's syscall-restart logic runs on them when it is let go, as if hiber
had never come.
"""

import ctypes
import errno
import logging
import os
import struct
from dataclasses import dataclass

from ..errors import HiberError
from ..kernel import proc
from ..kernel import ptrace as pt
from ..kernel.sys import (NR, address_of, pidfd_getfd, pidfd_open, process_vm_readv,
                          process_vm_writev, signed)
from . import interrupts, seccomp, sigframe

log = logging.getLogger(__name__)

SYSCALL_INSN = b"\x0f\x05"
# mov $15, %rax; syscall (glibc's and musl's __restore_rt, Go's sigreturn)
# and mov $15, %eax; syscall
SIGRETURN_SEQUENCES = (bytes.fromhex("48c7c00f0000000f05"), bytes.fromhex("b80f0000000f05"))
NR_RT_SIGRETURN = 15
ARG_REGS = ["di", "si", "dx", "r10", "r8", "r9"]
ALL_SIGNALS_BLOCKED = (1 << 64) - 1  # the kernel ignores SIGKILL/SIGSTOP bits
MINUS_ONE = (1 << 64) - 1
TRAP_FLAG = 0x100
PAGE_SIZE = 4096
MAP_FIXED_NOREPLACE = 0x100000
SCAN_LIMIT = 64 << 20
# -ERESTARTSYS .. -ERESTART_RESTARTBLOCK: a call that a signal interrupted
RESTART_ERRORS = range(-516, -511)


class RemoteSyscallError(HiberError):
    def __init__(self, tid, name, errno_value):
        self.tid = tid
        self.name = name
        self.errno = errno_value
        super().__init__(f"{name}() inside TID {tid} failed: {os.strerror(errno_value)}")


class InjectionError(HiberError):
    pass


@dataclass
class Gadgets:
    """Instructions of a task that injected syscalls run on."""
    syscall: int            # a ``syscall`` instruction
    sigreturn: int = None   # a ``mov $15, %rax; syscall`` sequence, if any
    sigreturn_size: int = 0


def _executable_mappings(pid):
    return [m for m in proc.maps(pid) if m.perms[2] == "x"
            and m.path not in ("[vsyscall]", "[uprobes]")]


def _scan(pid, mappings, patterns):
    """(address, pattern) of the first pattern found in the mappings."""
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for m in mappings:
            try:
                mem.seek(m.start)
                code = mem.read(min(m.end - m.start, SCAN_LIMIT))
            except OSError:
                continue
            for pattern in patterns:
                i = code.find(pattern)
                if i >= 0:
                    return m.start + i, pattern
    return None, None


def find_syscall_instruction(pid, outside_vdso=False):
    """Address of a ``syscall`` instruction in an executable mapping of pid."""
    # the vdso first: it is always there and never changes under us
    ordered = sorted(_executable_mappings(pid), key=lambda m: m.path != "[vdso]")
    if outside_vdso:
        ordered = [m for m in ordered if m.path != "[vdso]"]
    address, _ = _scan(pid, ordered, [SYSCALL_INSN])
    if address is None:
        raise InjectionError(f"PID {pid} has no executable mapping with a syscall instruction")
    return address


def find_sigreturn(pid):
    """(address, size) of an rt_sigreturn sequence in pid, or (None, 0)."""
    # libc first: that is where one is; the vdso of x86-64 has none
    ordered = sorted((m for m in _executable_mappings(pid) if m.path != "[vdso]"),
                     key=lambda m: "libc" not in os.path.basename(m.path))
    address, pattern = _scan(pid, ordered, SIGRETURN_SEQUENCES)
    return (address, len(pattern)) if address is not None else (None, 0)


def find_gadgets(pid):
    """Everything RemoteTask needs to run syscalls in any thread of pid."""
    address, size = find_sigreturn(pid)
    return Gadgets(find_syscall_instruction(pid), address, size)


class RemoteTask:
    """A context in which syscalls run inside thread ``tid`` of process ``pid``.

        with RemoteTask(pid, tid) as task:
            brk = task.syscall("brk", 0)

    The thread must be in a PTRACE_INTERRUPT stop. On exit, whatever
    happened, its registers and signal mask are exactly as they were, and
    scratch memory is given back; should hiber die inside the block, the
    thread puts itself back (see the module's docstring).
    """

    def __init__(self, pid, tid=None, gadget=None, killed_with_tracer=False):
        self.pid = pid
        self.tid = tid or pid
        gadgets = gadget if isinstance(gadget, Gadgets) else None
        self.gadget = gadgets.syscall if gadgets else gadget  # restore moves it with the vdso
        self._gadgets = gadgets
        self.killed_with_tracer = killed_with_tracer
        self.mode = None          # "parked", "per-call" or "plain"
        self._saved_regs = None
        self._saved_mask = None
        self._at = "event"        # the kind of stop the thread is in
        self._call_regs = None    # template of the registers of a call
        self._stack_saved = []    # (address, bytes) we overwrote below the stack pointer
        self._stack_low = None    # lowest stack byte in use by us
        self._scratch = []
        self._pending_signal = 0  # a signal that stopped the thread among our calls
        self._filters = None      # None without seccomp, else (nr, args, ip) -> allowed?
        self._forbidden = set()   # calls we ran that its filters would not have let through
        self.cloned = []  # TIDs created by clone calls run here (PTRACE_O_TRACECLONE)

    # ---- entering and leaving ---------------------------------------------

    def __enter__(self):
        self._saved_regs = pt.get_regs(self.tid)
        self._saved_mask = pt.get_sigmask(self.tid)
        try:
            self._prepare()
        except BaseException as e:
            self.__exit__(type(e), e, e.__traceback__)
            raise
        return self

    def _prepare(self):
        if self.killed_with_tracer:
            if self.gadget is None:
                self.gadget = find_syscall_instruction(self.pid)
            self.mode = "plain"
            pt.set_sigmask(self.tid, ALL_SIGNALS_BLOCKED)  # no handler may run among our calls
            return
        if self._gadgets is None:
            self._gadgets = find_gadgets(self.pid) if self.gadget is None else \
                Gadgets(self.gadget, *find_sigreturn(self.pid))
            self.gadget = self._gadgets.syscall
        self._filters = seccomp.judge_of(self.pid, self.tid)
        reason = self._why_not_parked()
        if reason is None:
            reason = self._park()
        if reason is not None:
            log.debug("TID %d: no parking (%s): registers and mask put back after each "
                      "syscall", self.tid, reason)
            self.mode = "per-call"

    @property
    def saved_regs(self):
        """The thread's own registers, as they were before we came."""
        return self._saved_regs

    @property
    def saved_sigmask(self):
        """The thread's own blocked-signal mask (ours blocks everything)."""
        return self._saved_mask

    def _why_not_parked(self):
        g = self._gadgets
        if g.sigreturn is None:
            return "no rt_sigreturn instruction in the task"
        status = proc.status(self.pid, self.tid)
        if "shstk" in status.get("x86_Thread_features", "").split():
            return "a shadow stack, which rt_sigreturn would check"
        args = [self._saved_regs[pt.GPREG[r]] for r in ARG_REGS]
        if self._filters is not None and \
                not self._filters(NR_RT_SIGRETURN, args, g.sigreturn + g.sigreturn_size):
            return "its seccomp filter would not let it run rt_sigreturn"
        return None

    def _park(self):
        """Write the frame and park the thread on it; None, or why not."""
        regs = self._saved_regs
        xstate = pt.get_regset(self.tid, pt.NT_X86_XSTATE, 1 << 16)
        xfeatures = struct.unpack_from("<Q", xstate, sigframe.SW_RESERVED_OFFSET)[0]
        where = sigframe.place(regs[pt.GPREG["sp"]], len(xstate))
        frame = sigframe.build(where, sigframe.regs_as_resumed(regs), self._saved_mask,
                               xstate, xfeatures, self._gadgets.sigreturn)
        if not self._claim_stack(where.frame, where.end - where.frame):
            return "no writable stack below its stack pointer"
        try:
            self.write(where.frame, frame)
        except InjectionError:
            self._give_back_stack()
            return "its stack below the stack pointer is not writable"
        parked = pt.Regs(*regs)
        parked[pt.GPREG["ip"]] = self._gadgets.sigreturn
        parked[pt.GPREG["sp"]] = where.frame + 8  # rt_sigreturn finds the frame at rsp - 8
        parked[pt.GPREG["orig_ax"]] = MINUS_ONE   # no syscall-restart fixup may touch rip/rax
        parked[pt.GPREG["flags"]] &= ~TRAP_FLAG
        # registers first: parked with its own mask, a signal may run its
        # handler on the way, and the handler returns to the rt_sigreturn
        pt.set_regs(self.tid, parked)
        pt.set_sigmask(self.tid, ALL_SIGNALS_BLOCKED)  # no handler may run among our calls
        self._call_regs = parked
        self.mode = "parked"
        return None

    def _claim_stack(self, address, size):
        """Save the bytes at [address, address + size): False if unreadable."""
        buf = bytearray(size)
        try:
            got = process_vm_readv(self.pid, [(address_of(buf), size)], [(address, size)])
        except OSError:
            return False
        if got != size:
            return False
        self._stack_saved.append((address, bytes(buf)))
        self._stack_low = address
        return True

    def _give_back_stack(self):
        failures = []
        for address, data in reversed(self._stack_saved):
            try:
                self.write(address, data)
            except (InjectionError, OSError) as e:
                failures.append(f"0x{address:x}: {e}")
        self._stack_saved.clear()
        return failures

    def __exit__(self, *exc):
        errors = []
        for address, size in reversed(self._scratch):
            try:
                result = self._run_syscall("munmap", address, size)
                if -4096 < result < 0:
                    errors.append(f"munmap(0x{address:x}): {os.strerror(-result)}")
            except HiberError as e:
                errors.append(str(e))
        self._scratch.clear()
        try:
            if self._at != "event":
                self._back_to_interrupt_stop()
            if self._at != "gone":
                # a parked thread gets its mask first: parked with its own
                # mask it is still harmless, not so with its own registers
                # and our mask; otherwise its registers matter more
                undo = [lambda: pt.set_sigmask(self.tid, self._saved_mask),
                        lambda: pt.set_regs(self.tid, self._saved_regs)]
                for step in undo if self.mode == "parked" else reversed(undo):
                    step()
        except (OSError, HiberError) as e:
            errors.append(str(e))
        # below the red zone: free stack by the ABI, as after a signal handler
        errors += self._give_back_stack()
        if self._forbidden:
            log.warning("TID %d: its seccomp filters forbid %s, which hiber ran in it with "
                        "the filters suspended; a hiber killed in the microseconds of one "
                        "of those calls leaves it to them (docs/interrupted-dumps.md)",
                        self.tid, ", ".join(sorted(map(str, self._forbidden))))
            self._forbidden.clear()
        if errors and exc[0] is None:
            raise InjectionError(f"TID {self.tid}: could not put the thread back as it was: "
                                 + "; ".join(errors))
        return False

    # ---- running one syscall ------------------------------------------------

    def syscall_raw(self, name, *args):
        """Run one syscall; return the raw (signed) result, -errno on error."""
        interrupts.check()  # between two calls: a safe point to stop
        return self._run_syscall(name, *args)

    def undo_syscall(self, name, *args):
        """A syscall that undoes one of ours (a munmap after a probe): run
        even when a signal has asked the dump to stop, which it would
        otherwise leave undone."""
        return self._run_syscall(name, *args)

    def filters_allow(self, name, *args):
        """Whether the thread's seccomp filters would let it make this call
        itself (True without filters): a call they forbid is one a hiber
        killed in the middle of it leaves to them. For optional calls."""
        number = NR[name] if isinstance(name, str) else name
        return self._filters_allow(number, self._arg_values(name, args))

    def _filters_allow(self, number, values):
        if self._filters is None:
            return True
        ip = self._gadgets.sigreturn + self._gadgets.sigreturn_size \
            if self.mode == "parked" else self.gadget + 2
        return self._filters(number, values, ip)

    @staticmethod
    def _arg_values(name, args):
        if len(args) > len(ARG_REGS):
            raise ValueError(f"{name}: at most six arguments")
        return [(args[i] if i < len(args) else 0) & MINUS_ONE for i in range(len(ARG_REGS))]

    def _run_syscall(self, name, *args):
        number = NR[name] if isinstance(name, str) else name
        values = self._arg_values(name, args)
        if not self._filters_allow(number, values):
            self._forbidden.add(name)
        while True:
            if self.mode == "parked":
                result = self._call_parked(name, number, values)
            elif self.mode == "per-call":
                result = self._call_restoring(name, number, values)
            else:
                result = self._call_plain(name, number, values)
            if result not in RESTART_ERRORS:
                return result
            # interrupted (a SIGSTOP to the task, say): run it again, and
            # let no restart logic act on the registers it stopped with
            if self.mode != "per-call":  # that one has its own back already
                regs = pt.get_regs(self.tid)
                regs[pt.GPREG["orig_ax"]] = MINUS_ONE
                pt.set_regs(self.tid, regs)

    def _call_parked(self, name, number, args):
        # run the parked thread into its rt_sigreturn; at the syscall-entry
        # stop, make that syscall ours, returning to the rt_sigreturn
        self._run_to_syscall_stop(name)
        regs = self._call_regs_for(number, args, self._gadgets.sigreturn)
        pt.set_regs(self.tid, regs)
        self._at = "entry"
        return self._finish_call(name, self._gadgets.sigreturn)

    def _call_restoring(self, name, number, args):
        # our mask first: the thread's own registers with our mask harm it
        # less (until the next signal) than our registers with its mask
        pt.set_sigmask(self.tid, ALL_SIGNALS_BLOCKED)
        pt.set_regs(self.tid, self._call_regs_for(number, args, self.gadget, self._saved_regs))
        self._run_to_syscall_stop(name)
        result = self._finish_call(name, self.gadget + 2)
        self._back_to_interrupt_stop()
        pt.set_regs(self.tid, self._saved_regs)
        pt.set_sigmask(self.tid, self._saved_mask)
        return result

    def _call_plain(self, name, number, args):
        # stopped at entry and exit, as the others; a single step over the
        # syscall instruction would save a stop, but a restored process then
        # no longer hits its uprobes (tests/test_uprobes.py)
        pt.set_regs(self.tid, self._call_regs_for(number, args, self.gadget, self._saved_regs))
        self._run_to_syscall_stop(name)
        return self._finish_call(name, self.gadget + 2)

    def _call_regs_for(self, number, args, ip, base=None):
        regs = pt.Regs(*(base if base is not None else self._call_regs))
        regs[pt.GPREG["orig_ax"]] = number  # at syscall entry: the call to make
        regs[pt.GPREG["ax"]] = number       # before it: what the syscall instruction reads
        regs[pt.GPREG["ip"]] = ip
        regs[pt.GPREG["flags"]] &= ~TRAP_FLAG
        if base is not None:
            regs[pt.GPREG["orig_ax"]] = MINUS_ONE  # no restart fixup on the way to the call
        for reg, value in zip(ARG_REGS, args):
            regs[pt.GPREG[reg]] = value
        return regs

    def _finish_call(self, name, return_ip):
        """From the syscall-entry stop of our call to its exit stop; the result."""
        pt.resume_to_syscall(self.tid)
        while True:
            kind, sig = self._wait()
            if kind == "syscall-stop":
                break
            if kind == "clone-event":
                # a traced clone stops the caller once more, inside the call
                self.cloned.append(pt.event_message(self.tid))
                pt.resume_to_syscall(self.tid)
                continue
            if kind == "signal-stop":
                self._pending_signal = sig  # delivered when we let go
            self._at = "unknown"
            raise InjectionError(f"TID {self.tid} did not come back from {name}(): {kind} {sig}")
        self._at = "exit"
        result = pt.get_regs(self.tid)
        if result[pt.GPREG["ip"]] != return_ip:
            raise InjectionError(f"TID {self.tid}: {name}() stopped at an unexpected address")
        return signed(result[pt.GPREG["ax"]])

    def _run_to_syscall_stop(self, name):
        """Resume the thread until it stops entering a syscall."""
        pt.resume_to_syscall(self.tid)
        while True:
            kind, sig = self._wait()
            if kind == "syscall-stop":
                self._at = "entry"
                return
            if kind == "event-stop" and sig == pt.SIGTRAP:
                # a job-control notification (a SIGCONT queued by the last
                # call does that under PTRACE_SEIZE): nothing to do for us
                pt.resume_to_syscall(self.tid)
                continue
            if kind == "signal-stop":
                self._pending_signal = sig  # delivered when we let go
            self._at = "unknown"
            raise InjectionError(f"TID {self.tid} did not reach {name}(): {kind} {sig}")

    def _wait(self):
        kind, sig = pt.stop_kind(pt.wait(self.tid))
        if kind == "signal-stop" and sig == pt.SIGTRAP and pt.is_syscall_stop(self.tid):
            kind = "syscall-stop"  # seized without PTRACE_O_TRACESYSGOOD
        if kind in ("exited", "killed"):
            self._at = "gone"
            raise InjectionError(f"TID {self.tid} of PID {self.pid} ended while hiber ran "
                                 f"syscalls in it ({kind} {sig})")
        return kind, sig

    def _back_to_interrupt_stop(self):
        """Bring the thread from a syscall stop back into a PTRACE_INTERRUPT
        stop, inside the kernel's signal handling: let go from there, it
        applies the syscall-restart logic to the registers it then has."""
        if self._at == "gone":
            return
        pt.interrupt(self.tid)
        pt.cont(self.tid, self._pending_signal)
        self._pending_signal = 0
        while True:
            kind, sig = self._wait()
            if kind == "event-stop":
                self._at = "event"
                return
            # a signal our mask cannot block (SIGSTOP): let it take effect
            pt.cont(self.tid, sig if kind == "signal-stop" else 0)

    def syscall(self, name, *args):
        """Run one syscall; raise RemoteSyscallError on an error result."""
        ret = self.syscall_raw(name, *args)
        if -4096 < ret < 0:
            raise RemoteSyscallError(self.tid, name, -ret)
        return ret

    # ---- scratch memory for arguments and results --------------------

    def scratch(self, size, address=0):
        """Memory in the task for arguments and results, given back on exit.

        A parked thread lends it from its stack, below the signal frame:
        nothing is mapped, so nothing can be left behind. Otherwise (or at
        a chosen ``address``) it is a fresh anonymous mapping, never over an
        existing one, unmapped on exit."""
        size = (size + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
        if self.mode == "parked" and not address:
            below = (self._stack_low - size) & ~63
            if self._claim_stack(below, self._stack_low - below):
                return below
        flags = 0x22 | (MAP_FIXED_NOREPLACE if address else 0)  # MAP_PRIVATE|MAP_ANONYMOUS
        got = self.syscall("mmap", address, size, 3, flags, -1, 0)
        self._scratch.append((got, size))
        return got

    def read(self, address, size):
        buf = bytearray(size)
        if size and process_vm_readv(self.pid, [(address_of(buf), size)], [(address, size)]) != size:
            raise InjectionError(f"PID {self.pid}: short read at 0x{address:x}")
        return bytes(buf)

    def write(self, address, data):
        buf = ctypes.create_string_buffer(bytes(data), len(data))
        try:
            done = process_vm_writev(self.pid, [(ctypes.addressof(buf), len(data))],
                                     [(address, len(data))]) if data else 0
        except OSError as e:
            if e.errno != errno.EFAULT:
                raise
            done = 0
        if done != len(data):
            raise InjectionError(f"PID {self.pid}: short write at 0x{address:x}")


def take_fd(task, number, close=None):
    """Our own copy of fd ``number`` of the task (pidfd_getfd: the same open
    file), which is closed in the task, so the program never sees it.
    ``close`` runs the close in the task (default: task.syscall)."""
    try:
        holder = pidfd_open(task.pid)
        try:
            return pidfd_getfd(holder, number)
        finally:
            os.close(holder)
    finally:
        (close or task.syscall)("close", number)
