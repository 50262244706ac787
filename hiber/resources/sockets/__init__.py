"""Sockets: each family one kind of the open-file table
(resources/files/kinds.py), with the pieces the families share.

    unix.py            unix sockets: the kind, its dump and its checks
    unix_names.py      the names unix sockets are bound to, their files on disk
    unix_connect.py    making the unix sockets again, in the order they need
    netlink.py         netlink sockets: port id, groups, connection, options
    packet.py          packet sockets: binding, SOL_PACKET options, rings' sizes
    other_families.py  the families hiber cannot dump yet, refused by name
    queues.py          the data queued in a socket: sk-queues.img
    options.py         socket options: sk_opts_entry
    common.py          recognising a socket, looking at it from hiber

The kernel side of asking about a socket (sock_diag) is kernel/sock_diag.py.
"""
