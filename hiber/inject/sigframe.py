"""A signal frame that puts a thread back as it was, for when hiber is gone.

While hiber runs syscalls inside a thread, the thread's registers point at
hiber's work. If hiber dies there (SIGKILL, the OOM killer), the kernel
detaches the thread and lets it run from those registers. So, before
changing anything, RemoteTask writes below the thread's stack pointer the
frame the kernel itself would write to deliver a signal (x86-64
``struct rt_sigframe``), holding the thread's own registers, FPU/AVX state
and signal mask, and parks the thread on an ``rt_sigreturn`` instruction
whose argument is that frame. A thread left alone there executes
rt_sigreturn and is back where it was, in every register and in its mask.

Layout, from high addresses down (as the kernel's get_sigframe does):

    sp                     the thread's stack pointer
    sp - 128               the ABI's red zone: leaf code may keep data there
    fpstate (64-aligned)   XSAVE image, then FP_XSTATE_MAGIC2
    frame (16n + 8)        pretcode, ucontext, siginfo
"""

import struct
from dataclasses import dataclass

from ..kernel import ptrace as pt

RED_ZONE = 128
RT_SIGFRAME_SIZE = 440     # pretcode 8 + ucontext 304 + siginfo 128
UC_FLAGS_OFFSET = 8
UC_STACK_OFFSET = 24
SIGCONTEXT_OFFSET = 48
UC_SIGMASK_OFFSET = 304

UC_FP_XSTATE = 1           # the frame's fpstate is an XSAVE area
UC_SIGCONTEXT_SS = 2
UC_STRICT_RESTORE_SS = 4   # take ss from the frame as it is
FP_XSTATE_MAGIC1 = 0x46505853
FP_XSTATE_MAGIC2 = 0x46505845
SW_RESERVED_OFFSET = 464   # struct _fpx_sw_bytes inside the FXSAVE area
XSAVE_ALIGN = 64           # XRSTOR faults on anything less aligned
MIN_XSAVE_SIZE = 576       # legacy area + XSAVE header: the kernel's minimum

# ss_flags the kernel refuses with EINVAL. rt_sigreturn applies uc_stack
# through restore_altstack(), which ignores every error but EFAULT: an
# invalid uc_stack leaves the thread's sigaltstack exactly as it is, which
# is what we want, and needs no syscall to learn the sigaltstack first.
ALTSTACK_UNCHANGED = 0x7fff0000

ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK = 512, 513, 514, 516
EINTR = 4
MASK64 = (1 << 64) - 1

# struct sigcontext (x86-64) lists the general registers in this order
SIGCONTEXT_REGS = ["r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "di", "si",
                   "bp", "bx", "dx", "ax", "cx", "sp", "ip", "flags"]


def regs_as_resumed(regs):
    """The registers a thread stopped in a syscall would run on with.

    A thread interrupted in a syscall shows rax = -ERESTART* and orig_rax =
    the call; the kernel rewrites them on the way back to user mode (no
    handler runs): restartable calls go back to the syscall instruction with
    rax = the call again. rt_sigreturn sets orig_rax to -1, so that rewrite
    never happens after it: the frame must hold the rewritten registers.
    ERESTART_RESTARTBLOCK calls (nanosleep, poll, futex with a timeout)
    would restart through restart_syscall(), but rt_sigreturn resets the
    restart block, so they return -EINTR: the frame says so directly.
    """
    out = pt.Regs(*regs)
    if out[pt.GPREG["orig_ax"]] >> 63:
        return out  # not in a syscall
    error = -(out[pt.GPREG["ax"]] - (1 << 64)) if out[pt.GPREG["ax"]] >> 63 else 0
    if error in (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND):
        out[pt.GPREG["ax"]] = out[pt.GPREG["orig_ax"]]
        out[pt.GPREG["ip"]] -= 2
    elif error == ERESTART_RESTARTBLOCK:
        out[pt.GPREG["ax"]] = (-EINTR) & MASK64
    return out


@dataclass
class FramePlace:
    frame: int      # the rt_sigframe; the parked thread's rsp is frame + 8
    fpstate: int    # the XSAVE image
    end: int        # first byte above the XSAVE image and its magic
    top: int        # sp - red zone: nothing at or above it is touched


def place(sp, xstate_size):
    top = sp - RED_ZONE
    fpstate = (top - xstate_size - 4) & ~(XSAVE_ALIGN - 1)
    # a handler is entered as if called: (rsp + 8) 16-byte aligned
    frame = ((fpstate - RT_SIGFRAME_SIZE) & ~15) - 8
    return FramePlace(frame, fpstate, fpstate + xstate_size + 4, top)


def xsave_image(xstate, xfeatures):
    """The thread's XSAVE area (NT_X86_XSTATE) as a signal frame carries it.

    ptrace puts the XCR0 value in the first bytes of sw_reserved (where gdb
    reads it); a signal frame has struct _fpx_sw_bytes there instead, and the
    kernel restores the extended state only when magic1 is set and magic2
    follows the area (check_xstate_in_sigframe): otherwise it restores the
    legacy x87/SSE part alone and AVX registers would come back zeroed.
    """
    if len(xstate) < MIN_XSAVE_SIZE:
        raise ValueError(f"an XSAVE area of {len(xstate)} bytes is too short")
    image = bytearray(xstate)
    struct.pack_into("<IIQI28x", image, SW_RESERVED_OFFSET, FP_XSTATE_MAGIC1,
                     len(xstate) + 4, xfeatures, len(xstate))
    return bytes(image) + struct.pack("<I", FP_XSTATE_MAGIC2)


def build(where, regs, sigmask, xstate, xfeatures, restorer):
    """The bytes from where.frame to where.end (regs already as resumed)."""
    frame = bytearray(RT_SIGFRAME_SIZE)
    struct.pack_into("<Q", frame, 0, restorer)
    struct.pack_into("<QQ", frame, UC_FLAGS_OFFSET,
                     UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS, 0)
    struct.pack_into("<QiiQ", frame, UC_STACK_OFFSET, 0, ALTSTACK_UNCHANGED, 0, 0)
    values = [regs[pt.GPREG[name]] for name in SIGCONTEXT_REGS]
    selectors = [regs[pt.GPREG[name]] & 0xffff for name in ("cs", "gs", "fs", "ss")]
    struct.pack_into("<18Q4H4QQ", frame, SIGCONTEXT_OFFSET, *values, *selectors,
                     0, 0, 0, 0, where.fpstate)
    struct.pack_into("<Q", frame, UC_SIGMASK_OFFSET, sigmask)
    gap = bytes(where.fpstate - where.frame - RT_SIGFRAME_SIZE)
    return bytes(frame) + gap + xsave_image(xstate, xfeatures)
