/* Unix sockets that are not plain pairs, in the directory argv[1] (its cwd):
 *   listener   stream, bound to DIR/listen.sock by its absolute path (mode
 *              0640, owner 4321:8765),
 *              one connection accepted (with data queued both ways, the
 *              client shut down for writing after its data) and one
 *              waiting to be accepted
 *   relative   seqpacket, bound to "rel.sock" (relative), listening
 *   receiver   datagram, bound to an abstract name, with three datagrams
 *              queued: from "sender1" (bound to DIR/s1.sock, connected to
 *              it), from "sender2" (unbound, connected to it), from
 *              "sender3" (bound to an abstract name, unconnected, sendto)
 *   ghost      datagram, bound to DIR/gone.sock, then unlinked; a client
 *              connected to it
 *   replaced   datagram, bound to DIR/replaced.sock, a regular file put at
 *              that path since; a client connected to it
 *   lone       stream, unbound, unconnected
 *   closed     stream pair whose other end was closed with "last" queued
 *   dgclosed   datagram pair whose other end was closed with "late" queued
 *   carrier    datagram pair with SCM_RIGHTS queued: the read end of a pipe
 *              holding "through the pipe" (closed in the process), then one
 *              end of a stream pair (closed in the process)
 * After the check signal each is used: names, modes and owners are as they
 * were, the waiting connection is accepted and talks, datagrams come with
 * their senders' addresses, the deleted file stays deleted and the
 * replacing one stays, the passed descriptors work. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

/* set-up failed: the test sees no READY line, and this one */
#define fail_now(...)                                       \
	do {                                                \
		printf("FAIL setting up: ");                \
		printf(__VA_ARGS__);                        \
		printf(" (%s)\n", strerror(errno));         \
		exit(1);                                    \
	} while (0)

static socklen_t address(struct sockaddr_un *a, const char *name, int abstract)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	strncpy(a->sun_path + (abstract ? 1 : 0), name, sizeof(a->sun_path) - 2);
	return offsetof(struct sockaddr_un, sun_path) + (abstract ? 1 : 0) + strlen(name);
}

static int bound(int type, const char *name, int abstract)
{
	struct sockaddr_un a;
	socklen_t len = address(&a, name, abstract);
	int s = socket(AF_UNIX, type, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a, len))
		fail_now("bind %s", name);
	return s;
}

static int connected(int type, const char *name, int abstract)
{
	struct sockaddr_un a;
	socklen_t len = address(&a, name, abstract);
	int s = socket(AF_UNIX, type, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&a, len))
		fail_now("connect %s", name);
	return s;
}

static int readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 5000) == 1;
}

static ssize_t take(int fd, char *buf, size_t len)
{
	if (!readable(fd))
		return -2;
	ssize_t n = recv(fd, buf, len - 1, MSG_DONTWAIT);
	buf[n > 0 ? n : 0] = 0;
	return n;
}

static void send_fd(int via, int fd)
{
	char space[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = "f", .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = space,
			    .msg_controllen = sizeof(space) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(via, &m, 0) != 1)
		fail_now("sendmsg SCM_RIGHTS");
}

static int recv_fd(int via)
{
	char space[CMSG_SPACE(sizeof(int))], c;
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = space,
			    .msg_controllen = sizeof(space) };
	if (!readable(via) || recvmsg(via, &m, MSG_DONTWAIT) != 1)
		return -1;
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);
	if (!h || h->cmsg_type != SCM_RIGHTS)
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(h), sizeof(int));
	return fd;
}

/* one datagram, and the path or @abstract name of its sender ("" when unbound) */
static ssize_t take_from(int fd, char *buf, size_t len, char *from)
{
	struct sockaddr_un a;
	socklen_t alen = sizeof(a);
	if (!readable(fd))
		return -2;
	ssize_t n = recvfrom(fd, buf, len - 1, MSG_DONTWAIT, (struct sockaddr *)&a, &alen);
	buf[n > 0 ? n : 0] = 0;
	from[0] = 0;
	if (alen > offsetof(struct sockaddr_un, sun_path)) {
		size_t nlen = alen - offsetof(struct sockaddr_un, sun_path);
		if (a.sun_path[0] == 0) {
			from[0] = '@';
			memcpy(from + 1, a.sun_path + 1, nlen - 1);
			from[nlen] = 0;
		} else {
			snprintf(from, 108, "%s", a.sun_path);
		}
	}
	return n;
}

int main(int argc, char **argv)
{
	char buf[256], from[256], abstract_rx[64], abstract_s3[64], lpath[108];
	struct stat st;
	int sv[2], p[2];
	harness_init();
	if (argc < 2 || chdir(argv[1]))
		fail_now("chdir");
	if (snprintf(lpath, sizeof(lpath), "%s/listen.sock", argv[1]) >= (int)sizeof(lpath))
		fail_now("%s is too long a directory", argv[1]);
	snprintf(abstract_rx, sizeof(abstract_rx), "hiber-rx-%d", getpid());
	snprintf(abstract_s3, sizeof(abstract_s3), "hiber-s3-%d", getpid());

	int listener = bound(SOCK_STREAM, lpath, 0);
	if (chmod(lpath, 0640) || chown(lpath, 4321, 8765) || listen(listener, 8))
		fail_now("listener");
	int client = connected(SOCK_STREAM, lpath, 0);
	int accepted = accept(listener, NULL, NULL);
	int waiting = connected(SOCK_STREAM, lpath, 0);
	send(client, "to server", 9, 0);
	send(accepted, "to client", 9, 0);
	shutdown(client, SHUT_WR);

	int relative = bound(SOCK_SEQPACKET, "rel.sock", 0);
	listen(relative, 4);

	int receiver = bound(SOCK_DGRAM, abstract_rx, 1);
	int sender1 = bound(SOCK_DGRAM, "s1.sock", 0);
	struct sockaddr_un rx;
	socklen_t rxlen = address(&rx, abstract_rx, 1);
	if (connect(sender1, (struct sockaddr *)&rx, rxlen))
		fail_now("connect sender1");
	int sender2 = connected(SOCK_DGRAM, abstract_rx, 1);
	int sender3 = bound(SOCK_DGRAM, abstract_s3, 1);
	send(sender1, "one", 3, 0);
	send(sender2, "two", 3, 0);
	sendto(sender3, "three", 5, 0, (struct sockaddr *)&rx, rxlen);

	int ghost = bound(SOCK_DGRAM, "gone.sock", 0);
	int ghost_client = connected(SOCK_DGRAM, "gone.sock", 0);
	unlink("gone.sock");

	int replaced = bound(SOCK_DGRAM, "replaced.sock", 0);
	int replaced_client = connected(SOCK_DGRAM, "replaced.sock", 0);
	unlink("replaced.sock");
	int f = open("replaced.sock", O_CREAT | O_WRONLY, 0600);
	if (f < 0 || write(f, "keep", 4) != 4)
		fail_now("replacing file");
	close(f);

	int lone = socket(AF_UNIX, SOCK_STREAM, 0);

	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	int closed = sv[0];
	send(sv[1], "last", 4, 0);
	close(sv[1]);

	socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
	int dgclosed = sv[0];
	send(sv[1], "late", 4, 0);
	close(sv[1]);

	int carrier[2], passed[2];
	socketpair(AF_UNIX, SOCK_DGRAM, 0, carrier);
	if (pipe(p) || write(p[1], "through the pipe", 16) != 16)
		fail_now("pipe");
	send_fd(carrier[0], p[0]);
	close(p[0]);
	socketpair(AF_UNIX, SOCK_STREAM, 0, passed);
	send_fd(carrier[0], passed[1]);
	close(passed[1]);

	ready("listener=%d", listener);
	wait_for_check();

	/* the listener: its file, the accepted pair, the waiting connection */
	expect(stat("listen.sock", &st) == 0 && S_ISSOCK(st.st_mode), "listen.sock is gone");
	expect((st.st_mode & 07777) == 0640, "listen.sock mode %o", st.st_mode & 07777);
	expect(st.st_uid == 4321 && st.st_gid == 8765, "listen.sock owner %d:%d", st.st_uid,
	       st.st_gid);
	expect(take(accepted, buf, sizeof(buf)) == 9 && !strcmp(buf, "to server"),
	       "accepted read '%s'", buf);
	expect(take(accepted, buf, sizeof(buf)) == 0, "accepted: no end after the client's data");
	expect(take(client, buf, sizeof(buf)) == 9 && !strcmp(buf, "to client"),
	       "client read '%s'", buf);
	expect(send(client, "x", 1, MSG_NOSIGNAL) < 0, "client shut down for writing writes");
	int second = accept(listener, NULL, NULL);
	expect(second >= 0, "the waiting connection is not there: %s", strerror(errno));
	send(waiting, "late hello", 10, 0);
	expect(take(second, buf, sizeof(buf)) == 10 && !strcmp(buf, "late hello"),
	       "waiting connection read '%s'", buf);
	send(second, "welcome", 7, 0);
	expect(take(waiting, buf, sizeof(buf)) == 7, "waiting connection got no answer");
	int third = connected(SOCK_STREAM, lpath, 0);
	expect(third >= 0 && accept(listener, NULL, NULL) >= 0, "new connections");

	/* the relative name, reached from DIR */
	struct sockaddr_un a;
	socklen_t alen = sizeof(a);
	getsockname(relative, (struct sockaddr *)&a, &alen);
	expect(!strcmp(a.sun_path, "rel.sock"), "relative name is now '%s'", a.sun_path);
	int rel_client = connected(SOCK_SEQPACKET, "rel.sock", 0);
	expect(accept(relative, NULL, NULL) >= 0 && rel_client >= 0, "relative listener");

	/* datagrams and their senders */
	char s3[80];
	snprintf(s3, sizeof(s3), "@%s", abstract_s3);
	expect(take_from(receiver, buf, sizeof(buf), from) == 3 && !strcmp(buf, "one") &&
	       !strcmp(from, "s1.sock"), "first datagram '%s' from '%s'", buf, from);
	expect(take_from(receiver, buf, sizeof(buf), from) == 3 && !strcmp(buf, "two") &&
	       !strcmp(from, ""), "second datagram '%s' from '%s'", buf, from);
	expect(take_from(receiver, buf, sizeof(buf), from) == 5 && !strcmp(buf, "three") &&
	       !strcmp(from, s3), "third datagram '%s' from '%s'", buf, from);
	send(sender2, "again", 5, 0);
	expect(take(receiver, buf, sizeof(buf)) == 5, "sender2 cannot send again");
	expect(recv(receiver, buf, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN, "more datagrams");

	/* the deleted and the replaced names */
	expect(send(ghost_client, "boo", 3, 0) == 3 && take(ghost, buf, sizeof(buf)) == 3,
	       "the deleted socket is not reached");
	expect(access("gone.sock", F_OK) < 0 && errno == ENOENT, "gone.sock is back");
	expect(send(replaced_client, "hi", 2, 0) == 2 && take(replaced, buf, sizeof(buf)) == 2,
	       "the replaced socket is not reached");
	f = open("replaced.sock", O_RDONLY);
	expect(f >= 0 && read(f, buf, 4) == 4 && !memcmp(buf, "keep", 4),
	       "the replacing file changed");

	/* the lone socket */
	alen = sizeof(a);
	expect(getpeername(lone, (struct sockaddr *)&a, &alen) < 0 && errno == ENOTCONN,
	       "lone socket is connected");
	int type = 0;
	socklen_t tlen = sizeof(type);
	getsockopt(lone, SOL_SOCKET, SO_TYPE, &type, &tlen);
	expect(type == SOCK_STREAM, "lone socket of type %d", type);

	/* peers closed with data queued */
	expect(take(closed, buf, sizeof(buf)) == 4 && !strcmp(buf, "last"), "closed: '%s'", buf);
	expect(take(closed, buf, sizeof(buf)) == 0, "closed: no end");
	expect(take(dgclosed, buf, sizeof(buf)) == 4 && !strcmp(buf, "late"),
	       "dgclosed: '%s'", buf);

	/* the descriptors passed */
	int pipe_end = recv_fd(carrier[1]);
	expect(pipe_end >= 0 && read(pipe_end, buf, 16) == 16 &&
	       !memcmp(buf, "through the pipe", 16), "the passed pipe");
	int passed_end = recv_fd(carrier[1]);
	expect(passed_end >= 0 && send(passed[0], "over", 4, 0) == 4 &&
	       take(passed_end, buf, sizeof(buf)) == 4, "the passed socket");
	return report();
}
