"""The request loop of `hiber swrk FD` and `hiber service`: a criu_req per
SOCK_SEQPACKET datagram, a criu_resp back for each, as criu's cr-service
answers them; the connection ends after a request without keep_open, as
criu's does."""

import contextlib
import errno
import logging
import os
import socket
import struct
import types

from .. import CRIU_VERSION, __version__
from ..errors import HiberError
from ..images.messages import classes as C
from . import opts as O

log = logging.getLogger(__name__)

T = {name: number for number, name in enumerate(
    ("EMPTY", "DUMP", "RESTORE", "CHECK", "PRE_DUMP", "PAGE_SERVER", "NOTIFY", "CPUINFO_DUMP",
     "CPUINFO_CHECK", "FEATURE_CHECK", "VERSION", "WAIT_PID", "PAGE_SERVER_CHLD",
     "SINGLE_PRE_DUMP"))}
ESSENTIAL = ("ptrace_seize", "clone3_set_tid", "pr_set_mm_map", "xstate")


def peer_of(sock):
    pid, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                    12))
    return pid


class Session:
    """One client's connection."""

    def __init__(self, sock):
        self.sock = sock
        self.peer = peer_of(sock)
        self.children = set()   # page servers started for this client (WAIT_PID)

    def serve(self):
        while True:
            data = self.sock.recv(1 << 20)
            if not data:
                return
            req = C["criu_req"]()
            try:
                req.ParseFromString(data)
            except Exception:
                self._send(self._failure(0, errno.EINVAL, "the request is not a criu_req"))
                return
            self._send(self.handle(req))
            if not req.keep_open:
                return

    def _send(self, resp):
        self.sock.send(resp.SerializeToString())

    def _failure(self, req_type, cr_errno, message):
        return C["criu_resp"](type=req_type, success=False, cr_errno=cr_errno,
                              cr_errmsg=message)

    def handle(self, req):
        handler = {T["VERSION"]: self.version, T["CHECK"]: self.check,
                   T["FEATURE_CHECK"]: self.feature_check, T["DUMP"]: self.dump,
                   T["PRE_DUMP"]: self.pre_dump, T["SINGLE_PRE_DUMP"]: self.pre_dump,
                   T["RESTORE"]: self.restore, T["PAGE_SERVER"]: self.page_server,
                   T["PAGE_SERVER_CHLD"]: self.page_server,
                   T["WAIT_PID"]: self.wait_pid}.get(req.type)
        if handler is None:
            name = next((n for n, v in T.items() if v == req.type), str(req.type))
            return self._failure(req.type, errno.EOPNOTSUPP,
                                 f"hiber does not serve {name} requests")
        try:
            resp = handler(req)
        except O.Refused as e:
            log.error("%s", e)
            return self._failure(req.type, e.cr_errno, str(e))
        except (HiberError, OSError) as e:
            log.error("%s", e)
            return self._failure(req.type, getattr(e, "errno", None) or 0, str(e))
        resp.type, resp.success = req.type, True
        return resp

    # -- requests ---------------------------------------------------------

    def version(self, req):
        major, minor = CRIU_VERSION
        return C["criu_resp"](version=C["criu_version"](
            major_number=major, minor_number=minor, gitid=f"hiber-{__version__}",
            sublevel=0, name="hiber"))

    def check(self, req):
        from ..kernel import probes
        missing = [p.name for p, ok, _ in probes.run(ESSENTIAL) if not ok]
        if missing:
            raise O.Refused(f"hiber cannot work here: {', '.join(missing)}", errno.ENOSYS)
        return C["criu_resp"]()

    def feature_check(self, req):
        from ..kernel import probes
        asked = req.features if req.HasField("features") else C["criu_features"]()
        got = C["criu_features"]()
        results = {p.name: ok for p, ok, _ in probes.run(["mem_dirty_track", "uffd"])}
        if asked.HasField("mem_track"):
            got.mem_track = results["mem_dirty_track"]
        if asked.HasField("lazy_pages"):
            got.lazy_pages = results["uffd"]
        if asked.HasField("pidfd_store"):
            got.pidfd_store = False
        return C["criu_resp"](features=got)

    def _request(self, req, needs_images=True):
        r = O.Request(req.opts if req.HasField("opts") else C["criu_opts"](images_dir_fd=-1),
                      self.peer)
        if needs_images and r.images_dir is None:
            raise O.Refused("the request names no images directory (images_dir_fd)",
                            errno.EBADF)
        if r.notify_scripts:
            r.options = _with_notify(r.options, self.notify)
        return r

    def dump(self, req):
        from ..dump import dump
        r = self._request(req)
        if r.pid is None:
            raise O.Refused("the request names no tree to dump (criu_opts.pid): hiber does "
                            "not dump its client", errno.EINVAL)
        with _logging(r, "dump"):
            dump(r.pid, r.images_dir, options=r.options)
        return C["criu_resp"](dump=C["criu_dump_resp"](restored=False))

    def pre_dump(self, req):
        from ..dump import pre_dump
        r = self._request(req)
        with _logging(r, "pre-dump"):
            pre_dump(r.pid, r.images_dir, options=r.options)
        return C["criu_resp"](dump=C["criu_dump_resp"](restored=False))

    def restore(self, req):
        from ..restore import restore
        r = self._request(req)
        with _logging(r, "restore"):
            result = restore(r.images_dir, options=r.options)
        return C["criu_resp"](restore=C["criu_restore_resp"](pid=result.pids[0]))

    def page_server(self, req):
        from ..images.imagedir import ImageDir
        from ..pages import server
        r = self._request(req)
        images = ImageDir(r.images_dir, create=True)
        listener = server.listen(r.options.address, r.options.port or 0)
        port = listener.getsockname()[1]
        child = os.fork()
        if child == 0:
            code = 1
            try:
                with _logging(r, "page-server"):
                    server.serve(listener, images)
                code = 0
            finally:
                os._exit(code)
        listener.close()
        if req.type == T["PAGE_SERVER_CHLD"]:
            self.children.add(child)
        return C["criu_resp"](ps=C["criu_page_server_info"](pid=child, port=port))

    def wait_pid(self, req):
        _, status = os.waitpid(req.pid, 0)
        self.children.discard(req.pid)
        return C["criu_resp"](status=status)

    # -- NOTIFY: the client runs its hooks at the action-script moments ---

    def notify(self, action, pid):
        """Tell the client an action moment came; True if its hook went well."""
        note = C["criu_notify"](script=action)
        if pid is not None:
            note.pid = pid
        self._send(C["criu_resp"](type=T["NOTIFY"], success=True, notify=note))
        data = self.sock.recv(1 << 20)
        if not data:
            return False
        answer = C["criu_req"]()
        answer.ParseFromString(data)
        return answer.type == T["NOTIFY"] and answer.notify_success


def _with_notify(options, notify):
    from dataclasses import replace
    return replace(options, notify=notify)


@contextlib.contextmanager
def _logging(r, command):
    """The request's log file (log_file in the work dir), as the CLI logs."""
    from ..logs import command_logging
    args = types.SimpleNamespace(verbosity=r.log_level, verbosity_given=True,
                                 log_file=r.log_file or None, work_dir=r.work_dir,
                                 images_dir=r.images_dir, command=command)
    if not args.log_file:
        yield
        return
    with command_logging(args):
        log.info("Serving a %s request of PID %d", command, os.getppid())
        try:
            yield
        except BaseException as e:
            log.error("%s FAILED: %s", command.capitalize(), e)
            raise
        log.info("%s finished successfully", command.capitalize())


def _stdio_to_devnull():
    """Clients close 0, 1 and 2 before exec'ing the service (pycriu does):
    /dev/null takes them, so no file hiber opens lands there."""
    for n in (0, 1, 2):
        try:
            os.fstat(n)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != n:
                os.dup2(null, n)
                os.close(null)


def swrk(fd):
    """`hiber swrk FD`: serve the client on the socket it passed as FD."""
    _stdio_to_devnull()
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    try:
        Session(sock).serve()
    finally:
        sock.close()
    return 0


def service(address, daemon=False, pidfile=None):
    """`hiber service --address PATH`: each connection a session, in turn."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(address)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    listener.bind(address)
    listener.listen(16)
    if daemon:
        if os.fork():
            os._exit(0)
        os.setsid()
    if pidfile:
        with open(pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    while True:
        conn, _ = listener.accept()
        # each session in a child: a request's failure, or its chdir and
        # namespaces, never reach the next client's
        child = os.fork()
        if child == 0:
            listener.close()
            code = 1
            try:
                Session(conn).serve()
                code = 0
            finally:
                os._exit(code)
        conn.close()
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
