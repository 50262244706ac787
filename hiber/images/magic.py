"""Magic numbers and file names of CRIU v4.2 images (spec §1.2, §1.6).

Every image type has a crit name (``"CORE"``), a magic, a file-name template
and the protobuf message its entries hold.  A few magics are shared by two
types (PAGEMAP/SHMEM_PAGEMAP, SIGNAL/PSIGNAL, BINFMT_MISC_OLD/BINFMT_MISC):
the file name tells them apart, the magic alone cannot.
"""

import re
from dataclasses import dataclass

IMG_COMMON_MAGIC = 0x54564319
IMG_SERVICE_MAGIC = 0x55105940
INVENTORY_MAGIC = 0x58313116

# Head word a file starts with, by class of file (spec §1.2).
HEAD_NONE = "none"        # inventory: its own magic is the first word
HEAD_COMMON = "common"    # every ordinary image
HEAD_SERVICE = "service"  # stats-dump, stats-restore, irmap-cache
HEAD_RAW = "raw"          # no magic at all (pages-N.img and friends)


@dataclass(frozen=True)
class ImageType:
    name: str            # crit's name, as in decoded JSON "magic"
    magic: int
    template: str | None  # file name with {} for the key; None: no file of its own
    message: str | None   # entry message; None for raw images
    head: str = HEAD_COMMON
    key_format: str = "d"  # how the key is written in the file name: d or x

    def file_name(self, key=None):
        if self.template is None:
            raise ValueError(f"{self.name} images have no file name template")
        if "{}" not in self.template:
            return self.template
        return self.template.format(format(key, self.key_format))


def _t(name, magic, template, message, head=HEAD_COMMON, key_format="d"):
    return ImageType(name, magic, template, message, head, key_format)


# Order matters only for magics shared by two names: decoding by magic
# picks the first one listed, like crit does for PAGEMAP.
IMAGE_TYPES = [
    _t("INVENTORY", INVENTORY_MAGIC, "inventory.img", "inventory_entry", HEAD_NONE),
    _t("PSTREE", 0x50273030, "pstree.img", "pstree_entry"),
    _t("CORE", 0x55053847, "core-{}.img", "core_entry"),
    _t("IDS", 0x54432030, "ids-{}.img", "task_kobj_ids_entry"),
    _t("MM", 0x57492820, "mm-{}.img", "mm_entry"),
    _t("FS", 0x51403912, "fs-{}.img", "fs_entry"),
    _t("PAGEMAP", 0x56084025, "pagemap-{}.img", "pagemap_entry"),
    _t("SHMEM_PAGEMAP", 0x56084025, "pagemap-shmem-{}.img", "pagemap_entry"),
    _t("PAGES", 0, "pages-{}.img", None, HEAD_RAW),
    _t("FDINFO", 0x56213732, "fdinfo-{}.img", "fdinfo_entry"),
    _t("FILES", 0x56303138, "files.img", "file_entry"),
    _t("SECCOMP", 0x64413049, "seccomp.img", "seccomp_entry"),
    _t("TIMENS", 0x43114433, "timens-{}.img", "timens_entry"),
    _t("STATS", 0x57093306, None, "stats_entry", HEAD_SERVICE),
    _t("IRMAP_CACHE", 0x57004059, "irmap-cache", None, HEAD_SERVICE),
    _t("PIPES_DATA", 0x56453709, "pipes-data.img", "pipe_data_entry"),
    _t("FIFO_DATA", 0x59333054, "fifo-data.img", "pipe_data_entry"),
    _t("MEMFD_INODE", 0x48453499, "memfd.img", "memfd_inode_entry"),
    _t("TTY_INFO", 0x59453036, "tty-info.img", "tty_info_entry"),
    _t("TTY_DATA", 0x59413026, "tty-data.img", "tty_data_entry"),
    _t("CGROUP", 0x59383330, "cgroup.img", "cgroup_entry"),
    _t("FILE_LOCKS", 0x54323616, "filelocks.img", "file_lock_entry"),
    _t("REMAP_FPATH", 0x59133954, "remap-fpath.img", "remap_file_path_entry"),
    _t("GHOST_FILE", 0x52583605, "ghost-file-{}.img", "ghost_file_entry", key_format="x"),
    _t("TCP_STREAM", 0x51465506, "tcp-stream-{}.img", "tcp_stream_entry", key_format="x"),
    _t("SK_QUEUES", 0x56264026, "sk-queues.img", "sk_packet_entry"),
    _t("MNTS", 0x55563928, "mountpoints-{}.img", None),
    _t("UTSNS", 0x54473203, "utsns-{}.img", "utsns_entry"),
    _t("IPC_VAR", 0x53115007, "ipcns-var-{}.img", "ipc_var_entry"),
    _t("IPCNS_SHM", 0x46283044, "ipcns-shm-{}.img", "ipc_shm_entry"),
    _t("IPCNS_MSG", 0x55453737, "ipcns-msg-{}.img", "ipc_msg_entry"),
    _t("IPCNS_SEM", 0x59573019, "ipcns-sem-{}.img", "ipc_sem_entry"),
    _t("NETDEV", 0x57373951, "netdev-{}.img", "net_device_entry"),
    _t("NETNS", 0x55933752, "netns-{}.img", "netns_entry"),
    _t("USERNS", 0x55474906, "userns-{}.img", None),
    _t("PIDNS", 0x61157326, "pidns-{}.img", None),
    _t("CPUINFO", 0x61404013, "cpuinfo.img", None),
    _t("APPARMOR", 0x59423047, "apparmor.img", None),
    _t("BINFMT_MISC_OLD", 0x67343323, "binfmt-misc.img", None),
    _t("BINFMT_MISC", 0x67343323, "binfmt-misc-{}.img", None),
    _t("AUTOFS", 0x49353943, "autofs-{}.img", None),
    _t("BPFMAP_FILE", 0x57506142, "bpfmap-file.img", None),
    _t("BPFMAP_DATA", 0x64324033, "bpfmap-data.img", None),
    _t("PIDFD", 0x54435556, "pidfd.img", None),
    # legacy images v4.2 still reads but no longer writes
    _t("CREDS", 0x54023547, "creds-{}.img", "creds_entry"),
    _t("SIGACT", 0x55344201, "sigacts-{}.img", "sa_entry"),
    _t("ITIMERS", 0x57464056, "itimers-{}.img", "itimer_entry"),
    _t("POSIX_TIMERS", 0x52603957, "posix-timers-{}.img", "posix_timer_entry"),
    _t("RLIMIT", 0x57113925, "rlimit-{}.img", "rlimit_entry"),
    _t("SIGNAL", 0x59255647, "signal-s-{}.img", "siginfo_entry"),
    _t("PSIGNAL", 0x59255647, "signal-p-{}.img", "siginfo_entry"),
    _t("VMAS", 0x54123737, "vmas-{}.img", "vma_entry"),
    _t("REG_FILES", 0x50363636, "reg-files.img", "reg_file_entry"),
    _t("PIPES", 0x56513555, "pipes.img", "pipe_entry"),
    _t("FIFO", 0x58364939, "fifo.img", "fifo_entry"),
    _t("TTY_FILES", 0x59433025, "tty.img", "tty_file_entry"),
    _t("UNIXSK", 0x54373943, "unixsk.img", None),
    _t("INETSK", 0x56443851, "inetsk.img", None),
    _t("PACKETSK", 0x60454618, "packetsk.img", None),
    _t("NETLINK_SK", 0x58005614, "netlinksk.img", None),
    _t("EVENTFD_FILE", 0x44523722, "eventfd.img", None),
    _t("EVENTPOLL_FILE", 0x45023858, "eventpoll.img", None),
    _t("EVENTPOLL_TFD", 0x44433746, "eventpoll-tfd.img", None),
    _t("SIGNALFD", 0x57323820, "signalfd.img", None),
    _t("INOTIFY_FILE", 0x48424431, "inotify.img", None),
    _t("INOTIFY_WD", 0x54562009, "inotify-wd.img", None),
    _t("FANOTIFY_FILE", 0x55096122, "fanotify.img", None),
    _t("FANOTIFY_MARK", 0x56506035, "fanotify-mark.img", None),
    _t("TUNFILE", 0x57143751, "tunfile.img", None),
    _t("TIMERFD", 0x50493712, "timerfd.img", None),
    _t("EXT_FILES", 0x59255641, "ext-files.img", None),
    _t("NS_FILES", 0x61394011, "ns-files.img", None),
]

# Raw images: no magic, not even a head word (spec §1.2).
RAW_PREFIXES = ("pages-", "ifaddr-", "route-", "route6-", "rule-", "iptables-",
                "ip6tables-", "nftables-", "netns-ct-", "netns-exp-", "tmpfs-",
                "tmpfs-dev-")

BY_NAME = {t.name: t for t in IMAGE_TYPES}

BY_MAGIC = {}
for _t_ in IMAGE_TYPES:
    if _t_.head != HEAD_RAW:
        BY_MAGIC.setdefault(_t_.magic, _t_)

# The stats files have no ".img" and two names; both are STATS.
_SPECIAL_NAMES = {"stats-dump": "STATS", "stats-restore": "STATS",
                  "irmap-cache": "IRMAP_CACHE"}


def _template_regex(t):
    digits = r"[0-9a-f]+" if t.key_format == "x" else r"[0-9]+"
    return re.compile(re.escape(t.template).replace(r"\{\}", f"({digits})") + "$")


# Longer templates first so "pagemap-shmem-" wins over "pagemap-".
_BY_TEMPLATE = sorted(
    ((_template_regex(t), t) for t in IMAGE_TYPES if t.template),
    key=lambda pair: -len(pair[1].template))


def type_of_file_name(file_name):
    """Return (ImageType, key or None) for a file name, or (None, None)."""
    if file_name in _SPECIAL_NAMES:
        return BY_NAME[_SPECIAL_NAMES[file_name]], None
    for regex, t in _BY_TEMPLATE:
        m = regex.match(file_name)
        if m:
            key = int(m.group(1), 16 if t.key_format == "x" else 10) if m.groups() else None
            return t, key
    return None, None


def is_raw_file_name(file_name):
    return file_name.startswith(RAW_PREFIXES)
