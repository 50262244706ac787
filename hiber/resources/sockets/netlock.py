"""The network lock: from the moment a TCP connection of the tree is put
in repair mode at dump until its restored socket is ready, no packet of it
may reach a socket that is not there (the kernel would answer with a RST
and the peer would drop the connection) nor leave one that is half-made.

As CRIU's nftables method does for a tree in hiber's network namespace,
one nftables table (family inet, named after the dump's run id, "CRIU-<id>",
so that CRIU and hiber find each other's) holds two sets of connections,
IPv4 and IPv6, and rules in the input and output hooks that drop every
packet of a connection in the sets. The peer's packets dropped so are
sent again by its TCP once the lock is gone (it keeps them until they are
acknowledged), so nothing is lost; packets marked 0xC114 (CRIU's
SOCCR_MARK) pass, for the FIN hiber itself sends to rebuild a half-closed
connection.

nftables is driven through libnftables (kernel/nftables.py).
"""

import ipaddress
import logging
import socket

from ...errors import HiberError
from ...kernel import nftables

log = logging.getLogger(__name__)

SOCCR_MARK = 0xC114
NETWORK_LOCK_IPTABLES, NETWORK_LOCK_NFTABLES, NETWORK_LOCK_SKIP = 0, 1, 2  # CRIU's numbers
METHODS = {"iptables": NETWORK_LOCK_IPTABLES, "nftables": NETWORK_LOCK_NFTABLES,
           "skip": NETWORK_LOCK_SKIP}


class NetworkLockError(HiberError):
    pass


def nft(*commands):
    """Run nft commands, all in one transaction; raise NetworkLockError
    with nft's own words when it refuses."""
    try:
        nftables.run(*commands)
    except nftables.NftError as e:
        raise NetworkLockError(f"the network lock (nftables) failed at {commands[0]!r}: {e}; "
                               "is nf_tables available? --network-lock skip does without, "
                               "at the risk of reset connections") from None


def table_name(run_id):
    """CRIU's name for the table, cut as CRIU cuts it (a 32-byte buffer:
    31 characters), so that each finds the other's lock."""
    return f"inet CRIU-{run_id}"[:31]


def _table_commands(table):
    """The table, its chains and sets: idempotent ("add" of what exists is
    no error), so that a restore may lock again what the dump locked."""
    out = [f"add table {table}"]
    for hook in ("output", "input"):
        out.append(f"add chain {table} {hook} {{ type filter hook {hook} priority 0; }}")
    out.append(f"flush chain {table} output")
    out.append(f"flush chain {table} input")
    out.append(f"add set {table} conns4 {{ type ipv4_addr . inet_service . ipv4_addr . "
               "inet_service; }")
    out.append(f"add set {table} conns6 {{ type ipv6_addr . inet_service . ipv6_addr . "
               "inet_service; }")
    for hook in ("output", "input"):
        out.append(f"add rule {table} {hook} meta mark {SOCCR_MARK:#x} accept")
        out.append(f"add rule {table} {hook} ip saddr . tcp sport . ip daddr . tcp dport "
                   "@conns4 drop")
        out.append(f"add rule {table} {hook} ip6 saddr . tcp sport . ip6 daddr . tcp dport "
                   "@conns6 drop")
    return out


def _address(family, packed):
    """An address as nftables reads it, and its set (4 or 6); a v4-mapped
    IPv6 address travels as IPv4."""
    ip = ipaddress.ip_address(packed)
    if family == socket.AF_INET6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped), "4"
    return str(ip), "4" if ip.version == 4 else "6"


def _elements(table, connections):
    out = []
    for family, src, sport, dst, dport in connections:
        src_text, which = _address(family, src)
        dst_text, _ = _address(family, dst)
        # both ways: what the peer sends, and what the half-made socket would
        out.append(f"add element {table} conns{which} {{ {dst_text} . {dport} . "
                   f"{src_text} . {sport} }}")
        out.append(f"add element {table} conns{which} {{ {src_text} . {sport} . "
                   f"{dst_text} . {dport} }}")
    return out


class NetworkLock:
    """The lock of one dump's connections (``method`` as criu's
    --network-lock). Connections are added one by one as dump meets them."""

    def __init__(self, run_id, method="nftables"):
        self.table = table_name(run_id)
        self.method = METHODS.get(method or "nftables", NETWORK_LOCK_NFTABLES)
        self._made = False

    def lock(self, family, src, sport, dst, dport):
        if self.method == NETWORK_LOCK_SKIP:
            return
        if self.method == NETWORK_LOCK_IPTABLES:
            raise NetworkLockError("--network-lock iptables: iptables is not supported by "
                                   "hiber; give --network-lock nftables (or skip)")
        # the table each time (idempotent): the caller's network namespace
        # may be another one than the last call's
        nft(*_table_commands(self.table),
            *_elements(self.table, [(family, src, sport, dst, dport)]))
        if not self._made:
            log.info("Network locked with nftables table %s", self.table)
        self._made = True

    def lock_all(self, connections):
        """At restore: lock again (the dump's table may be gone)."""
        if self.method != NETWORK_LOCK_NFTABLES or not connections:
            return
        nft(*_table_commands(self.table), *_elements(self.table, connections))
        self._made = True

    def unlock(self):
        """Drop the table, whoever made it; quiet when it is not there."""
        if self.method != NETWORK_LOCK_NFTABLES:
            return
        try:
            nft(f"delete table {self.table}")
            log.info("Network unlocked: nftables table %s deleted", self.table)
        except NetworkLockError as e:
            if "No such file" not in str(e) and "does not exist" not in str(e):
                log.warning("could not unlock the network: %s", e)
        self._made = False


def lock_namespace(run_id):
    """Lock a whole network namespace, as criu does for a tree in a network
    namespace of its own (net.c, network_lock_internal): every packet in or
    out is dropped but those marked 0xC114. nftables acts on the namespace
    of the caller: call it from inside (setns) the namespace to lock."""
    table = table_name(run_id)
    commands = [f"add table {table}"]
    for hook in ("output", "input"):
        commands.append(f"add chain {table} {hook} {{ type filter hook {hook} priority 0; "
                        "policy drop; }")
        commands.append(f"add rule {table} {hook} meta mark {SOCCR_MARK:#x} accept")
    nft(*commands)


def unlock_namespace(run_id):
    """Undo lock_namespace (from inside the same namespace); quiet when the
    lock is not there."""
    NetworkLock(run_id).unlock()

