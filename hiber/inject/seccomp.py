"""What a thread's seccomp filters would do with one syscall, computed here.

hiber seizes threads with PTRACE_O_SUSPEND_SECCOMP, so the syscalls it
injects bypass the filters. That holds only while hiber is the tracer: if
hiber dies, a parked thread runs rt_sigreturn (sigframe.py) under its
filters again. RemoteTask parks a filtered thread so only if its filters
let rt_sigreturn through, which this module finds out by running the
filters' classic BPF here, as the kernel would (kernel/seccomp.c: every
filter runs, the action of highest precedence wins).
"""

import errno
import struct

from ..kernel import ptrace as pt
from ..kernel import proc

AUDIT_ARCH_X86_64 = 0xc000003e
SECCOMP_DATA_SIZE = 64

# actions (the top 16 bits of a filter's result), most precedent first when
# compared as signed 32-bit numbers
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7fc00000
RET_TRACE = 0x7ff00000
RET_LOG = 0x7ffc0000
RET_ALLOW = 0x7fff0000
ACTION_FULL = 0xffff0000

# classic BPF opcode fields (linux/bpf_common.h)
LD, LDX, ST, STX, ALU, JMP, RET, MISC = range(8)
MODE_IMM, MODE_ABS, MODE_MEM, MODE_LEN = 0x00, 0x20, 0x60, 0x80
SRC_X = 0x08
RVAL_A = 0x10
MISC_TXA = 0x80
U32 = 0xffffffff


class FilterError(ValueError):
    pass


def seccomp_mode(pid, tid):
    """0 none, 1 strict, 2 filter (/proc/PID/task/TID/status)."""
    return int(proc.status(pid, tid).get("Seccomp", "0"))


def filters_of(tid):
    """Every filter program of a ptrace-stopped thread, newest first."""
    programs = []
    while True:
        try:
            raw = pt.seccomp_filter(tid, len(programs))
        except OSError as e:
            if e.errno == errno.ENOENT:
                return programs
            raise
        programs.append([struct.unpack_from("<HBBI", raw, i) for i in range(0, len(raw), 8)])


def _signed(value):
    return value - (1 << 32) if value & 0x80000000 else value


def run_filter(program, data):
    """Run one filter on a 64-byte struct seccomp_data; its 32-bit result."""
    a = x = 0
    memory = [0] * 16
    pc = 0
    for _ in range(4096):  # BPF_MAXINSNS: programs never loop, but be sure
        if pc >= len(program):
            break
        code, jt, jf, k = program[pc]
        pc += 1
        kind = code & 0x07
        if kind == RET:
            return (a if code & RVAL_A else k) & U32
        if kind in (LD, LDX):
            mode = code & 0xe0
            if mode == MODE_ABS:
                if k % 4 or k + 4 > SECCOMP_DATA_SIZE:
                    raise FilterError(f"load at offset {k}")
                value = struct.unpack_from("<I", data, k)[0]
            elif mode == MODE_LEN:
                value = SECCOMP_DATA_SIZE
            elif mode == MODE_IMM:
                value = k
            elif mode == MODE_MEM:
                value = memory[k & 15]
            else:
                raise FilterError(f"opcode 0x{code:x}")
            if kind == LD:
                a = value
            else:
                x = value
        elif kind == ST:
            memory[k & 15] = a
        elif kind == STX:
            memory[k & 15] = x
        elif kind == ALU:
            a = _alu(code & 0xf0, a, x if code & SRC_X else k)
        elif kind == JMP:
            operand = x if code & SRC_X else k
            op = code & 0xf0
            if op == 0x00:  # JA
                pc += k
                continue
            taken = {0x10: a == operand, 0x20: a > operand, 0x30: a >= operand,
                     0x40: bool(a & operand)}.get(op)
            if taken is None:
                raise FilterError(f"opcode 0x{code:x}")
            pc += jt if taken else jf
        elif kind == MISC:
            if code & MISC_TXA:
                a = x
            else:
                x = a
    raise FilterError("the program ran past its end")


def _alu(op, a, operand):
    if op in (0x30, 0x90) and operand == 0:
        raise FilterError("division by zero")
    results = {0x00: a + operand, 0x10: a - operand, 0x20: a * operand,
               0x30: a // operand if operand else 0, 0x40: a | operand,
               0x50: a & operand, 0x60: a << (operand & 31), 0x70: a >> (operand & 31),
               0x80: -a, 0x90: a % operand if operand else 0, 0xa0: a ^ operand}
    if op not in results:
        raise FilterError(f"ALU operation 0x{op:x}")
    return results[op] & U32


def action(programs, nr, args, ip):
    """The action (RET_*) the filters take for syscall ``nr``."""
    data = struct.pack("<iIQ6Q", nr, AUDIT_ARCH_X86_64, ip, *(v & ((1 << 64) - 1) for v in args))
    result = RET_ALLOW
    for program in programs:
        got = run_filter(program, data) & ACTION_FULL
        if _signed(got) < _signed(result):
            result = got
    return result


def judge_of(pid, tid):
    """None for a thread without seccomp; else a function telling whether
    the thread could run a syscall (nr, args, ip) itself, hiber gone."""
    mode = seccomp_mode(pid, tid)
    if mode == 0:
        return None
    if mode == 1:  # strict mode: read, write, exit and rt_sigreturn
        return lambda nr, args, ip: nr in (0, 1, 15, 60)
    try:
        programs = filters_of(tid)
    except OSError:
        return lambda nr, args, ip: False  # not known to be safe

    def judge(nr, args, ip):
        try:
            return action(programs, nr, args, ip) in (RET_ALLOW, RET_LOG)
        except FilterError:
            return False
    return judge
