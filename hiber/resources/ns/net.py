"""The network namespace of a tree, as CRIU 4.2 keeps it: its links
(netdev-N.img, each with its IPv4 and IPv6 conf sysctls), the namespace's
own sysctls (netns-N.img), and what iproute2 saves and restores in its
binary form: addresses (ifaddr-N.img), routes (route-N.img, route6-N.img)
and rules (rule-N.img); the nftables ruleset as `nft list ruleset` prints
it (nftables-N.img).

Links: the loopback.  Others (veth pairs, tun, bridges, macvlan) are
refused by name for now.  The /proc/sys/net files, rtnetlink sockets and
the ip tool all act on the namespace of the thread that opens or forks
them (switch.py)."""

import os
import shutil
import subprocess

from ...errors import HiberError
from ...images.messages import classes as C
from ...kernel import rtnl
from . import switch

IFF_UP, IFF_LOOPBACK = 0x1, 0x8
# the sysctls CRIU saves, in its order: an entry's place says which it is
DEVCONFS4 = ("accept_local", "accept_redirects", "accept_source_route", "arp_accept",
             "arp_announce", "arp_filter", "arp_ignore", "arp_notify", "bootp_relay",
             "disable_policy", "disable_xfrm", "force_igmp_version", "forwarding",
             "igmpv2_unsolicited_report_interval", "igmpv3_unsolicited_report_interval",
             "log_martians", "medium_id", "promote_secondaries", "proxy_arp",
             "proxy_arp_pvlan", "route_localnet", "rp_filter", "secure_redirects",
             "send_redirects", "shared_media", "src_valid_mark", "tag",
             "ignore_routes_with_linkdown", "drop_gratuitous_arp",
             "drop_unicast_in_l2_multicast")
DEVCONFS6 = ("accept_dad", "accept_ra", "accept_ra_defrtr", "accept_ra_from_local",
             "accept_ra_min_hop_limit", "accept_ra_mtu", "accept_ra_pinfo",
             "accept_ra_rt_info_max_plen", "accept_ra_rtr_pref", "accept_redirects",
             "accept_source_route", "autoconf", "dad_transmits", "disable_ipv6",
             "drop_unicast_in_l2_multicast", "drop_unsolicited_na", "force_mld_version",
             "force_tllao", "forwarding", "hop_limit", "ignore_routes_with_linkdown",
             "keep_addr_on_down", "max_addresses", "max_desync_factor",
             "mldv1_unsolicited_report_interval", "mldv2_unsolicited_report_interval", "mtu",
             "ndisc_notify", "optimistic_dad", "proxy_ndp", "regen_max_retry",
             "router_probe_interval", "router_solicitation_delay",
             "router_solicitation_interval", "router_solicitations", "stable_secret",
             "suppress_frag_ndisc", "temp_prefered_lft", "temp_valid_lft",
             "use_oif_addrs_only", "use_optimistic", "use_tempaddr")
STRINGS = {"stable_secret", "ping_group_range"}
CTL_STR, CTL_32 = 5, 6
# raw images: iproute2's own dump format, and the nftables ruleset
IP_SAVES = (("ifaddr", ["addr"]), ("route", ["route"]), ("route6", ["-6", "route"]),
            ("rule", ["rule"]))


class NetNamespaceError(HiberError):
    pass


def _tool(name):
    path = shutil.which(name)
    if path is None:
        raise NetNamespaceError(f"a network namespace needs {name} (iproute2/nftables) to "
                                "be saved and made again: install it")
    return path


# ---- sysctls -----------------------------------------------------------------

def _read_sysctl(path, name):
    entry = C["sysctl_entry"](type=CTL_STR if name in STRINGS else CTL_32)
    try:
        with open(f"/proc/sys/{path}/{name}") as f:
            text = f.read().strip()
    except OSError:
        return entry  # a sysctl this kernel lacks, or an unset stable_secret (EIO)
    if name in STRINGS:
        entry.sarg = text
    else:
        entry.iarg = int(text)
    return entry


def _confs(path, names):
    return [_read_sysctl(path, n) for n in names]


def _write_confs(path, names, entries):
    for name, entry in zip(names, entries):
        value = entry.sarg if entry.HasField("sarg") else \
            entry.iarg if entry.HasField("iarg") else None
        full = f"/proc/sys/{path}/{name}"
        if value is None or not os.path.exists(full):
            continue
        now = _read_sysctl(path, name)
        if (now.sarg if name in STRINGS else now.iarg) == value:
            continue  # as it is already: a default
        try:
            with open(full, "w") as f:
                f.write(str(value))
        except OSError as e:
            raise NetNamespaceError(f"cannot set {full[10:]} to {value}: {e.strerror}") from None


# ---- dump ---------------------------------------------------------------------

def dump(images, pid, ns_id, pages):
    with switch.inside_of("net", pid):
        devices = []
        for link in rtnl.links():
            if not link["flags"] & IFF_LOOPBACK:
                raise NetNamespaceError(
                    f"PID {pid}'s network namespace has the {link['kind'] or 'device'} link "
                    f"{link['name']}: hiber restores a namespace's loopback only, for now")
            devices.append(C["net_device_entry"](
                type=1, ifindex=link["index"], mtu=link["mtu"], flags=link["flags"],
                name=link["name"], address=link["address"] or b"",
                conf4=_confs(f"net/ipv4/conf/{link['name']}", DEVCONFS4),
                conf6=_confs(f"net/ipv6/conf/{link['name']}", DEVCONFS6)))
        images.write("NETDEV", ns_id, devices)
        images.write("NETNS", ns_id, [C["netns_entry"](
            def_conf4=_confs("net/ipv4/conf/default", DEVCONFS4),
            all_conf4=_confs("net/ipv4/conf/all", DEVCONFS4),
            def_conf6=_confs("net/ipv6/conf/default", DEVCONFS6),
            all_conf6=_confs("net/ipv6/conf/all", DEVCONFS6),
            unix_conf=_confs("net/unix", ("max_dgram_qlen",)),
            ipv4_sysctl=_confs("net/ipv4", ("ping_group_range",)))])
        ip = _tool("ip")
        for image, args in IP_SAVES:
            _save([ip, *args, "save"], images, f"{image}-{ns_id}.img")
        nft = shutil.which("nft")
        if nft is not None:
            _save([nft, "list", "ruleset"], images, f"nftables-{ns_id}.img")


def _save(command, images, name):
    with open(os.path.join(images.path, name), "wb") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, timeout=60)
    if done.returncode != 0:
        raise NetNamespaceError(f"{' '.join(command)} failed: "
                                f"{done.stderr.decode(errors='replace').strip()}")


# ---- restore ------------------------------------------------------------------

def make(images, ns_id):
    """A new network namespace as the images describe it; its descriptor."""
    devices = images.read("NETDEV", ns_id)
    for d in devices:
        if d.type != 1:
            raise NetNamespaceError(f"netdev-{ns_id}.img: link {d.name} is not a loopback: "
                                    "hiber restores a namespace's loopback only, for now")
    netns = images.read_one("NETNS", ns_id)
    ip = _tool("ip")
    with switch.fresh("net") as ns:
        for d in devices:
            _run([ip, "link", "set", "dev", d.name, "mtu", str(d.mtu)])
            _write_confs(f"net/ipv4/conf/{d.name}", DEVCONFS4, d.conf4)
            _write_confs(f"net/ipv6/conf/{d.name}", DEVCONFS6, d.conf6)
            if d.flags & IFF_UP:
                _run([ip, "link", "set", "dev", d.name, "up"])
        for path, names, field in (("net/ipv4/conf/default", DEVCONFS4, "def_conf4"),
                                   ("net/ipv4/conf/all", DEVCONFS4, "all_conf4"),
                                   ("net/ipv6/conf/default", DEVCONFS6, "def_conf6"),
                                   ("net/ipv6/conf/all", DEVCONFS6, "all_conf6"),
                                   ("net/unix", ("max_dgram_qlen",), "unix_conf"),
                                   ("net/ipv4", ("ping_group_range",), "ipv4_sysctl")):
            _write_confs(path, names, getattr(netns, field))
        # rules first go, as the saved ones hold the default ones too
        _run([ip, "rule", "flush"])
        _run([ip, "rule", "delete", "table", "local"])
        for image, args in IP_SAVES:
            path = os.path.join(images.path, f"{image}-{ns_id}.img")
            if os.path.exists(path) and os.path.getsize(path):
                _run([ip, *args, "restore"], stdin=path)
        ruleset = os.path.join(images.path, f"nftables-{ns_id}.img")
        if os.path.exists(ruleset) and os.path.getsize(ruleset):
            _run([_tool("nft"), "-f", ruleset])
    return ns


def _run(command, stdin=None):
    with open(stdin or os.devnull, "rb") as source:
        done = subprocess.run(command, stdin=source, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=60)
    errors = [line for line in done.stderr.decode(errors="replace").splitlines()
              if "already assigned" not in line and "File exists" not in line]
    if done.returncode != 0 or (errors and "restore" in command):
        raise NetNamespaceError(f"{' '.join(command)} failed: {'; '.join(errors)}")
