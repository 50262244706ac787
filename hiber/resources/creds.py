"""Credentials of each thread (thread_core.creds, spec §2.10): user and
group ids, supplementary groups, the five capability sets, securebits,
no_new_privs and the LSM label; and the process's audit loginuid
(task_core.loginuid).

Restore builds them up inside the thread, in the order the kernel allows
(each step needs a capability a later one may drop):

    groups -> ids (SECBIT_NO_SETUID_FIXUP keeps the capabilities meanwhile)
    -> inheritable set -> bounding set (CAP_SETPCAP) -> ambient set (needs the
    cap in permitted and inheritable) -> securebits (CAP_SETPCAP) -> AppArmor
    label -> effective/permitted sets -> no_new_privs

The SELinux label and the loginuid are set earlier, on the leader before
any thread exists: SELinux refuses to relabel a multi-threaded process, and
/proc/PID/loginuid may only be written by the task itself, and is inherited.
"""

import os
import struct

from ..errors import HiberError
from ..images.messages import classes
from ..kernel import proc
from . import task

C = classes

PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_GET_SECUREBITS, PR_SET_SECUREBITS = 27, 28
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, PR_CAP_AMBIENT_CLEAR_ALL = 47, 2, 4
SECBIT_NO_SETUID_FIXUP = 1 << 2
CAPABILITY_VERSION_3 = 0x20080522
NO_LOGINUID = 0xffffffff
LSM_NONE, LSM_SELINUX, LSM_APPARMOR = 0, 1, 2
LSM_NAMES = {LSM_SELINUX: "SELinux", LSM_APPARMOR: "AppArmor"}
O_WRONLY = 1

CAP_NAMES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]
CAP_SYS_ADMIN = 21
SETS = ("inheritable", "permitted", "effective", "bounding", "ambient")
STATUS_KEYS = {"inheritable": "CapInh", "permitted": "CapPrm", "effective": "CapEff",
               "bounding": "CapBnd", "ambient": "CapAmb"}


class CredsError(HiberError):
    pass


def cap_name(bit):
    return CAP_NAMES[bit] if bit < len(CAP_NAMES) else f"capability {bit}"


def _words(mask):
    """CRIU keeps each set as two 32-bit words, low first."""
    return [mask & 0xffffffff, mask >> 32]


def _mask(words):
    words = list(words)
    return sum(w << (32 * i) for i, w in enumerate(words[:2]))


def image_sets(creds):
    """{set name: 64-bit mask} of a creds_entry."""
    return {"inheritable": _mask(creds.cap_inh), "permitted": _mask(creds.cap_prm),
            "effective": _mask(creds.cap_eff), "bounding": _mask(creds.cap_bnd),
            "ambient": _mask(creds.cap_amb)}


class Current:
    """A thread's credentials as /proc shows them now."""

    def __init__(self, pid, tid=None):
        s = proc.status(pid, tid)
        self.uids = [int(x) for x in s["Uid"].split()]
        self.gids = [int(x) for x in s["Gid"].split()]
        self.groups = sorted(int(g) for g in s.get("Groups", "").split())
        self.sets = {name: int(s.get(key, "0"), 16) for name, key in STATUS_KEYS.items()}
        self.no_new_privs = int(s.get("NoNewPrivs", "0"))


def _bits(mask):
    return [bit for bit in range(64) if mask >> bit & 1]


# ---- dump --------------------------------------------------------------------

def dump_thread(pid, tid, remote):
    """creds_entry of one thread; ``remote`` runs inside it (securebits)."""
    now = Current(pid, tid)
    uid, euid, suid, fsuid = now.uids
    gid, egid, sgid, fsgid = now.gids
    creds = C["creds_entry"](
        uid=uid, gid=gid, euid=euid, egid=egid, suid=suid, sgid=sgid, fsuid=fsuid,
        fsgid=fsgid, cap_inh=_words(now.sets["inheritable"]),
        cap_prm=_words(now.sets["permitted"]), cap_eff=_words(now.sets["effective"]),
        cap_bnd=_words(now.sets["bounding"]), secbits=remote.syscall("prctl", PR_GET_SECUREBITS),
        groups=now.groups, cap_amb=_words(now.sets["ambient"]))
    if now.no_new_privs:
        creds.no_new_privs = 1
    _dump_lsm(pid, tid, creds)
    return creds


def _attr(pid, tid, name):
    """An LSM attribute of /proc, "" where the LSM or the file is missing
    (reading attr/current without an LSM that has it gives EINVAL)."""
    path = f"/proc/{pid}/task/{tid}/attr/{name}" if tid else f"/proc/{pid}/attr/{name}"
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace").rstrip("\0\n")
    except OSError:
        return ""


def _dump_lsm(pid, tid, creds):
    """The label the LSM active here gives the thread (CRIU's lsm.c)."""
    kind = task.lsm_type()
    if kind == LSM_APPARMOR:
        label = _attr(pid, tid, "apparmor/current") or _attr(pid, tid, "current")
        profile = label.split(" ")[0]  # "name (enforce)": the mode is not part of it
        if profile and profile != "unconfined":
            if profile.startswith(":"):
                raise CredsError(f"TID {tid} of PID {pid} runs under the AppArmor profile "
                                 f"{profile} of a policy namespace, which hiber cannot restore")
            creds.lsm_profile = profile
    elif kind == LSM_SELINUX:
        label = _attr(pid, tid, "current")
        if label:
            creds.lsm_profile = label
        sockcreate = _attr(pid, tid, "sockcreate")
        if sockcreate:
            creds.lsm_sockcreate = sockcreate


def loginuid_of(pid):
    """/proc/PID/loginuid, or None without audit (CONFIG_AUDIT off: no file)."""
    try:
        with open(f"/proc/{pid}/loginuid") as f:
            return int(f.read().split()[0])
    except FileNotFoundError:
        if not os.path.exists(f"/proc/{pid}"):
            raise proc.NoSuchProcess(pid) from None
        return None


# ---- checks before anything is created --------------------------------------

class OwnCreds:
    """What hiber (and so each freshly forked stub) has to hand out."""

    def __init__(self, inventory_lsm):
        self.now = Current("self")
        self.last_cap = int(open("/proc/sys/kernel/cap_last_cap").read())
        self.lsm = task.lsm_type()
        self.image_lsm = inventory_lsm
        self.label = _attr("self", None, "current")

    def check_thread(self, tid, creds):
        """Refuse, naming the thread, what hiber cannot give back here."""
        wanted = image_sets(creds)
        ours = self.now.sets
        known = (1 << (self.last_cap + 1)) - 1
        for name, mask in wanted.items():
            if mask & ~known:
                raise CredsError(f"core-{tid}.img: thread {tid} has {cap_name(_bits(mask & ~known)[0])} "
                                 f"in its {name} set, which this kernel does not know (its last "
                                 f"capability is {self.last_cap}): restore on a newer kernel")
        lacking = [("permitted", wanted["permitted"] & ~ours["permitted"]),
                   ("bounding", wanted["bounding"] & ~ours["bounding"]),
                   ("inheritable", wanted["inheritable"]
                    & ~(ours["inheritable"] | ours["bounding"]))]
        for name, mask in lacking:
            if mask:
                raise CredsError(f"core-{tid}.img: thread {tid} had {cap_name(_bits(mask)[0])} "
                                 f"in its {name} capability set, which hiber itself lacks here: "
                                 "run hiber with that capability to restore it")
        if wanted["ambient"] & ~(wanted["permitted"] & wanted["inheritable"]):
            raise CredsError(f"core-{tid}.img: thread {tid} has ambient capabilities outside its "
                             "permitted and inheritable sets: the images are damaged")
        if creds.HasField("apparmor_data"):
            raise CredsError(f"core-{tid}.img: thread {tid} ran under an AppArmor policy "
                             "namespace, which hiber cannot restore")
        for what in ("lsm_profile", "lsm_sockcreate"):
            if creds.HasField(what):
                self._check_label(tid, what, getattr(creds, what))

    def _check_label(self, tid, what, label):
        if what == "lsm_profile" and label == self.label:
            return  # the stub has it already
        kind = LSM_NAMES.get(self.image_lsm, "LSM")
        if self.lsm == LSM_NONE or self.lsm != self.image_lsm:
            here = LSM_NAMES.get(self.lsm, "no LSM")
            raise CredsError(f"core-{tid}.img: thread {tid} ran with the {kind} label "
                             f"'{label}', and {here} is active here to give it back: restore "
                             f"it where {kind} is active with that label loaded")


# ---- restore ---------------------------------------------------------------

def _write_attr(remote, address, path, text):
    """Write text to a /proc attribute file from inside the task: these files
    accept writes from the task itself only."""
    data = text.encode()
    remote.write(address, path.encode() + b"\0")
    remote.write(address + 512, data)
    fd = remote.syscall("open", address, O_WRONLY)
    try:
        written = remote.syscall_raw("write", fd, address + 512, len(data))
    finally:
        remote.syscall("close", fd)
    return written


def restore_loginuid(remote, address, pid, tc):
    """The audit loginuid, on the leader before its threads exist (they
    inherit it). Nothing to do when the stub has it already."""
    if not tc.HasField("loginuid"):
        return
    ours = loginuid_of(pid)
    if ours is None or ours == tc.loginuid:
        return
    got = _write_attr(remote, address, "/proc/self/loginuid", str(tc.loginuid))
    if got < 0:
        raise CredsError(f"PID {pid}: cannot set its audit loginuid to {tc.loginuid} (errno "
                         f"{-got}; hiber's own is {ours}): a set loginuid can only be changed "
                         "with CAP_AUDIT_CONTROL and when audit's loginuid is not immutable")


def restore_selinux_label(remote, address, pid, creds):
    """SELinux relabels only a single-threaded process: done on the leader
    before threads are created, as CRIU does."""
    if task.lsm_type() != LSM_SELINUX or not creds.HasField("lsm_profile"):
        return
    if _attr(pid, None, "current") == creds.lsm_profile:
        return
    got = _write_attr(remote, address, "/proc/self/attr/current", creds.lsm_profile)
    if got < 0:
        raise CredsError(f"PID {pid}: cannot set its SELinux context to {creds.lsm_profile} "
                         f"(errno {-got}): the policy must allow hiber that transition")


def _capset(remote, address, effective, permitted, inheritable):
    # header {version, pid = 0: this thread}, then two {effective, permitted, inheritable}
    data = struct.pack("<Ii", CAPABILITY_VERSION_3, 0) + b"".join(
        struct.pack("<III", effective >> s & 0xffffffff, permitted >> s & 0xffffffff,
                    inheritable >> s & 0xffffffff) for s in (0, 32))
    remote.write(address, data)
    remote.syscall("capset", address, address + 8)


def restore_thread(remote, address, pid, tid, creds, last_capset=True):
    """Every credential of the thread up to, and with ``last_capset``
    including, the final effective/permitted sets (see the module doc).
    Returns the capset still to do when ``last_capset`` is False."""
    now = Current(pid, tid)
    wanted = image_sets(creds)
    if sorted(creds.groups) != now.groups:
        remote.write(address, struct.pack(f"<{len(creds.groups)}I", *creds.groups))
        remote.syscall("setgroups", len(creds.groups), address)
    uids = [creds.uid, creds.euid, creds.suid, creds.fsuid]
    gids = [creds.gid, creds.egid, creds.sgid, creds.fsgid]
    if (uids, gids) != (now.uids, now.gids):
        secbits = remote.syscall("prctl", PR_GET_SECUREBITS)
        if not secbits & SECBIT_NO_SETUID_FIXUP:
            # leaving uid 0 would otherwise clear the capabilities we still need
            remote.syscall("prctl", PR_SET_SECUREBITS, secbits | SECBIT_NO_SETUID_FIXUP)
        remote.syscall("setresgid", creds.gid, creds.egid, creds.sgid)
        remote.syscall("setfsgid", creds.fsgid)
        remote.syscall("setresuid", creds.uid, creds.euid, creds.suid)
        remote.syscall("setfsuid", creds.fsuid)
    sets = dict(now.sets)
    if wanted["inheritable"] != sets["inheritable"]:
        # before the bounding set shrinks: raising inheritable is bounded by it
        _capset(remote, address, sets["effective"], sets["permitted"], wanted["inheritable"])
        sets["inheritable"] = wanted["inheritable"]
    for bit in _bits(sets["bounding"] & ~wanted["bounding"]):
        remote.syscall("prctl", PR_CAPBSET_DROP, bit)
    if wanted["ambient"] != sets["ambient"]:
        remote.syscall("prctl", PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        for bit in _bits(wanted["ambient"]):
            remote.syscall("prctl", PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, bit, 0, 0)
    if remote.syscall("prctl", PR_GET_SECUREBITS) != creds.secbits:
        remote.syscall("prctl", PR_SET_SECUREBITS, creds.secbits)
    if task.lsm_type() == LSM_APPARMOR and creds.HasField("lsm_profile"):
        got = _write_attr(remote, address, f"/proc/self/task/{tid}/attr/current",
                          f"changeprofile {creds.lsm_profile}")
        if got < 0:
            raise CredsError(f"TID {tid}: cannot change to the AppArmor profile "
                             f"{creds.lsm_profile} (errno {-got}): is it loaded here?")
    if creds.HasField("lsm_sockcreate") and task.lsm_type() == LSM_SELINUX:
        got = _write_attr(remote, address, f"/proc/self/task/{tid}/attr/sockcreate",
                          creds.lsm_sockcreate)
        if got < 0:
            raise CredsError(f"TID {tid}: cannot set its SELinux socket context "
                             f"{creds.lsm_sockcreate} (errno {-got})")
    final = (wanted["effective"], wanted["permitted"], wanted["inheritable"])
    if final == (sets["effective"], sets["permitted"], sets["inheritable"]):
        final = None
    elif last_capset:
        _capset(remote, address, *final)
        final = None
    if creds.no_new_privs:
        remote.syscall("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    return final


def finish_capset(remote, address, tid, final):
    """The capset left for after the seccomp filters: it now goes through
    them, as the process's own did when it dropped CAP_SYS_ADMIN."""
    try:
        _capset(remote, address, *final)
    except HiberError as e:
        raise CredsError(f"TID {tid}: its seccomp filter let the capset that drops "
                         f"CAP_SYS_ADMIN after it fail ({e})") from None


def filters_need_late_capset(creds):
    """seccomp(SET_MODE_FILTER) needs no_new_privs or CAP_SYS_ADMIN (kernel
    seccomp_prepare_filter): a thread that has neither at the end must
    install its filters before its last capset, as it once did itself."""
    return not creds.no_new_privs and not image_sets(creds)["effective"] >> CAP_SYS_ADMIN & 1


def verify_thread(pid, tid, creds):
    """What /proc shows after the restore, against the image: a credential
    the kernel silently refused (setfsuid never fails) is an error."""
    now = Current(pid, tid)
    wanted = image_sets(creds)
    problems = []
    if now.uids != [creds.uid, creds.euid, creds.suid, creds.fsuid]:
        problems.append(f"uids {now.uids}")
    if now.gids != [creds.gid, creds.egid, creds.sgid, creds.fsgid]:
        problems.append(f"gids {now.gids}")
    if now.groups != sorted(creds.groups):
        problems.append(f"groups {now.groups}")
    problems += [f"{name} set 0x{now.sets[name]:x}" for name in SETS
                 if now.sets[name] != wanted[name]]
    if bool(now.no_new_privs) != bool(creds.no_new_privs):
        problems.append(f"no_new_privs {now.no_new_privs}")
    if problems:
        raise CredsError(f"TID {tid}: credentials not restored as dumped: "
                         + ", ".join(problems))
