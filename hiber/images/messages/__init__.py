"""The CRIU v4.2 image messages, written from shared/spec/criu-image-format.md.

Numbers, types and labels follow the spec section named above each group;
they decide wire compatibility with CRIU and crit.  Display options (hex,
flags, dict, dev) reproduce how crit prints each field in ``decode --pretty``.
"""

from ..schema import Schema

schema = Schema("hiber_criu.proto")
S = schema

# State that CRIU 4.2's messages have no field for (CPU affinity, mlockall,
# lock-on-fault and sealed VMAs, the next POSIX timer id) is kept in fields of hiber's own, numbered
# from here: far above CRIU's numbers, so that no field CRIU adds can take
# them. CRIU and crit read such images all the same: protobuf skips fields
# it does not know.
HIBER_FIELDS = 1000

# ---- enums -------------------------------------------------------------

S.enum("lsmtype", NO_LSM=0, SELINUX=1, APPARMOR=2)
S.enum("march", UNKNOWN=0, X86_64=1, ARM=2, AARCH64=3, PPC64=4, S390=5,
       MIPS=6, LOONGARCH64=7, RISCV64=8)
S.enum("seccomp_mode", disabled=0, strict=1, filter=2)
S.enum("user_x86_regs_mode", NATIVE=1, COMPAT=2)
S.enum("fd_types", UND=0, REG=1, PIPE=2, FIFO=3, INETSK=4, UNIXSK=5,
       EVENTFD=6, EVENTPOLL=7, INOTIFY=8, SIGNALFD=9, PACKETSK=10, TTY=11,
       FANOTIFY=12, NETLINKSK=13, NS=14, TUNF=15, EXT=16, TIMERFD=17,
       MEMFD=18, BPFMAP=19, PIDFD=20, CTTY=65534, AUTOFS_PIPE=65535)
S.enum("TtyType", nested_in="tty_info_entry", UNKNOWN=0, PTY=1, CONSOLE=2, VT=3, CTTY=4, EXT_TTY=5,
       SERIAL=6)

# each module adds its messages to the schema (the order does not matter:
# types are resolved when the schema is built)
from . import files, memory, sockets, sockets_more, task  # noqa: E402,F401

classes = schema.build()
