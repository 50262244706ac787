"""The UTS namespace: host and domain name (utsns-N.img, CRIU's UtsnsEntry).
The /proc/sys/kernel files read and write the caller's namespace."""

from ...images.messages import classes as C
from . import switch

HOSTNAME = "/proc/sys/kernel/hostname"
DOMAINNAME = "/proc/sys/kernel/domainname"


def _read(path):
    with open(path) as f:
        return f.read().rstrip("\n")


def _write(path, value):
    with open(path, "w") as f:
        f.write(value)


def dump(images, pid, ns_id, pages):
    with switch.inside_of("uts", pid):
        entry = C["utsns_entry"](nodename=_read(HOSTNAME), domainname=_read(DOMAINNAME))
    images.write("UTSNS", ns_id, [entry])


def make(images, ns_id):
    """A new UTS namespace with the dumped names; its descriptor."""
    entry = images.read_one("UTSNS", ns_id)
    with switch.fresh("uts") as ns:
        _write(HOSTNAME, entry.nodename)
        _write(DOMAINNAME, entry.domainname)
    return ns
