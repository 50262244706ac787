"""Every kind of open file hiber knows, registered in the order dump tries
them on an fd (the first whose ``match`` says yes takes it): a new kind is
one module and one line here."""

from ..sockets import inet, netlink, other_families, packet, unix
from . import (epoll, eventfd, fanotify, fifo, inotify, memfd, nsfile, pidfd, pipe, regular,
               signalfd, terminal, timerfd)
from .table import Table

KINDS = Table(
    pipe.KIND,      # links "pipe:[N]"; before FIFOs, as pipes are S_ISFIFO too
    fifo.KIND,
    eventfd.KIND,
    epoll.KIND,
    signalfd.KIND,
    timerfd.KIND,
    pidfd.KIND,
    inotify.KIND,
    fanotify.KIND,
    nsfile.KIND,
    unix.KIND,            # socket links "socket:[N]" of the unix family
    netlink.KIND,
    inet.KIND,            # inet and inet6: TCP, UDP, UDP-Lite, ICMP, raw
    packet.KIND,
    other_families.KIND,  # every other socket: refused, naming its family
    memfd.KIND,     # memfds and /dev/zero shared memory are S_ISREG: before regular files
    terminal.KIND,  # terminals are character devices: before regular files
    regular.KIND,   # regular files, directories and devices
)
