/* Unix socket pairs (socketpair) of each type, stream, datagram and
 * seqpacket, with messages queued both ways when the tree is dumped:
 *   inner[t]  both ends in the root
 *   split[t]  end 0 in the root, end 1 in the child (each closed the other)
 *   shared    a stream pair whose end 0 root and child both hold (one open
 *             file), end 1 in the root
 *   half[t]   end 0 shut down for writing after queueing "bye" (and, for
 *             seqpacket, an empty message): end 1 reads them, then the end
 *   bulk      a stream pair with 1000000 bytes queued (its sender's buffer
 *             made large first)
 * Extras on inner ends: SO_SNDBUF and SO_RCVTIMEO (stream end 0), O_NONBLOCK
 * and close-on-exec (datagram end 1), a dup of datagram end 0 at fd 200
 * (one open file), a peek offset (seqpacket end 1, past its first message).
 * After the check signal each end reads exactly what was queued for it,
 * each datagram and seqpacket message whole and in order (the empty one
 * too), then new messages go both ways, and shut down ends stay so. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/kcmp.h>

static const int types[3] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET };
static const char *names[3] = { "stream", "dgram", "seqpacket" };
#define BIG 100000
#define BULK 1000000
static char big[BIG];

/* what end 1 of a pair has to read (sent by end 0) and end 0 (by end 1) */
static void queue_both_ways(int sv[2], int type)
{
	send(sv[0], "first", 5, 0);
	if (type != SOCK_STREAM)
		send(sv[0], "", 0, 0); /* an empty message: datagrams and seqpacket keep it */
	send(sv[0], big, BIG, 0);
	send(sv[0], "third", 5, 0);
	send(sv[1], "reply", 5, 0);
}

static int wait_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 5000) == 1;
}

/* one message (or, for a stream, exactly len bytes) */
static ssize_t take(int fd, int type, char *buf, size_t len)
{
	if (!wait_readable(fd))
		return -2;
	if (type != SOCK_STREAM)
		return recv(fd, buf, len, MSG_DONTWAIT);
	size_t got = 0;
	while (got < len) {
		if (!wait_readable(fd))
			return got;
		ssize_t n = recv(fd, buf + got, len - got, MSG_DONTWAIT);
		if (n <= 0)
			return got ? (ssize_t)got : n;
		got += n;
	}
	return got;
}

static int nothing_more(int fd)
{
	char c;
	return recv(fd, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

static void expect_queued(int sv[2], int type, const char *what)
{
	static char buf[BIG + 16];
	ssize_t n = take(sv[1], type, buf, type == SOCK_STREAM ? 5 : sizeof(buf));
	expect(n == 5 && !memcmp(buf, "first", 5), "%s: first message %zd", what, n);
	if (type != SOCK_STREAM) {
		n = take(sv[1], type, buf, sizeof(buf));
		expect(n == 0, "%s: the empty message came back as %zd bytes", what, n);
	}
	n = take(sv[1], type, buf, type == SOCK_STREAM ? BIG : sizeof(buf));
	expect(n == BIG && !memcmp(buf, big, BIG), "%s: the big message: %zd bytes", what, n);
	n = take(sv[1], type, buf, type == SOCK_STREAM ? 5 : sizeof(buf));
	expect(n == 5 && !memcmp(buf, "third", 5), "%s: third message %zd", what, n);
	expect(nothing_more(sv[1]), "%s: end 1 has more than was queued", what);
	n = take(sv[0], type, buf, type == SOCK_STREAM ? 5 : sizeof(buf));
	expect(n == 5 && !memcmp(buf, "reply", 5), "%s: reply %zd", what, n);
	expect(nothing_more(sv[0]), "%s: end 0 has more than was queued", what);
}

/* the pair still works: a message each way */
static void expect_working(int sv[2], int type, const char *what)
{
	char buf[16] = "";
	expect(send(sv[0], "ping", 4, 0) == 4, "%s: send 0->1: %s", what, strerror(errno));
	expect(take(sv[1], type, buf, 4) == 4 && !memcmp(buf, "ping", 4), "%s: ping", what);
	expect(send(sv[1], "pong!", 5, 0) == 5, "%s: send 1->0: %s", what, strerror(errno));
	expect(take(sv[0], type, buf, 5) == 5 && !memcmp(buf, "pong!", 5), "%s: pong", what);
}

static void child(int split[3][2], int shared_end, int ready_fd)
{
	write(ready_fd, "x", 1);
	wait_for_check();
	for (int t = 0; t < 3; t++) {
		int sv[2] = { -1, split[t][1] };
		char what[32], buf[BIG + 16];
		snprintf(what, sizeof(what), "child %s", names[t]);
		ssize_t n = take(sv[1], types[t], buf, types[t] == SOCK_STREAM ? 5 : sizeof(buf));
		expect(n == 5 && !memcmp(buf, "first", 5), "%s: first %zd", what, n);
		if (types[t] != SOCK_STREAM)
			expect(take(sv[1], types[t], buf, sizeof(buf)) == 0, "%s: empty", what);
		n = take(sv[1], types[t], buf, types[t] == SOCK_STREAM ? BIG : sizeof(buf));
		expect(n == BIG && !memcmp(buf, big, BIG), "%s: big %zd", what, n);
		n = take(sv[1], types[t], buf, types[t] == SOCK_STREAM ? 5 : sizeof(buf));
		expect(n == 5 && !memcmp(buf, "third", 5), "%s: third %zd", what, n);
		expect(nothing_more(sv[1]), "%s: more than was queued", what);
		send(sv[1], "from-child", 10, 0);
		n = take(sv[1], types[t], buf, 11);
		expect(n == 11 && !memcmp(buf, "from-parent", 11), "%s: parent's %zd", what, n);
	}
	send(shared_end, "c", 1, 0);
	fflush(stdout);
	_exit(failures ? 1 : 0);
}

int main(void)
{
	int inner[3][2], split[3][2], half[3][2], shared[2], bulk[2], ready_pipe[2];
	harness_init();
	for (int i = 0; i < BIG; i++)
		big[i] = (char)(i * 7 + i / 251);
	for (int t = 0; t < 3; t++) {
		int big_buf = 1 << 20;
		if (socketpair(AF_UNIX, types[t], 0, inner[t]) || socketpair(AF_UNIX, types[t], 0, split[t]) ||
		    socketpair(AF_UNIX, types[t], 0, half[t]))
			return 2;
		setsockopt(inner[t][0], SOL_SOCKET, SO_SNDBUF, &big_buf, sizeof(big_buf));
		setsockopt(split[t][0], SOL_SOCKET, SO_SNDBUF, &big_buf, sizeof(big_buf));
		queue_both_ways(inner[t], types[t]);
		queue_both_ways(split[t], types[t]);
		send(half[t][0], "bye", 3, 0);
		if (types[t] == SOCK_SEQPACKET)
			send(half[t][0], "", 0, 0); /* an empty message just before the end */
		shutdown(half[t][0], SHUT_WR);
	}
	socketpair(AF_UNIX, SOCK_STREAM, 0, shared);
	socketpair(AF_UNIX, SOCK_STREAM, 0, bulk);
	int bulk_buf = 4 << 20;
	setsockopt(bulk[0], SOL_SOCKET, SO_SNDBUF, &bulk_buf, sizeof(bulk_buf));
	static char bulk_data[BULK];
	for (int i = 0; i < BULK; i++)
		bulk_data[i] = (char)(i % 253);
	if (send(bulk[0], bulk_data, BULK, MSG_DONTWAIT) != BULK)
		return 3;

	/* extras */
	int sndbuf = 65536, got_sndbuf;
	socklen_t len = sizeof(got_sndbuf);
	setsockopt(inner[0][0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	getsockopt(inner[0][0], SOL_SOCKET, SO_SNDBUF, &got_sndbuf, &len);
	struct timeval tmo = { 2, 500000 };
	setsockopt(inner[0][0], SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo));
	fcntl(inner[1][1], F_SETFL, O_NONBLOCK);
	fcntl(inner[1][1], F_SETFD, FD_CLOEXEC);
	int dup_fd = dup2(inner[1][0], 200);
	int peek_off = 0;
	char peeked[8];
	setsockopt(inner[2][1], SOL_SOCKET, SO_PEEK_OFF, &peek_off, sizeof(peek_off));
	recv(inner[2][1], peeked, sizeof(peeked), MSG_PEEK); /* moves the offset past "first" */

	pipe(ready_pipe);
	pid_t kid = fork();
	if (kid == 0) {
		for (int t = 0; t < 3; t++) {
			close(split[t][0]);
			close(inner[t][0]), close(inner[t][1]), close(half[t][0]), close(half[t][1]);
		}
		close(shared[1]), close(bulk[0]), close(bulk[1]);
		child(split, shared[0], ready_pipe[1]);
	}
	for (int t = 0; t < 3; t++)
		close(split[t][1]);
	char c;
	read(ready_pipe[0], &c, 1);
	ready("child=%d", kid);
	wait_for_check();
	kill(kid, CHECK_SIGNAL);

	long kcmp_same = syscall(SYS_kcmp, getpid(), kid, KCMP_FILE, shared[0], shared[0]);
	expect(kcmp_same == 0, "shared end 0 is not one open file with the child's (%ld)",
	       kcmp_same);
	int now;
	len = sizeof(now);
	getsockopt(inner[0][0], SOL_SOCKET, SO_SNDBUF, &now, &len);
	expect(now == got_sndbuf, "SO_SNDBUF %d, was %d", now, got_sndbuf);
	struct timeval tmo_now;
	len = sizeof(tmo_now);
	getsockopt(inner[0][0], SOL_SOCKET, SO_RCVTIMEO, &tmo_now, &len);
	expect(tmo_now.tv_sec == 2 && tmo_now.tv_usec == 500000, "SO_RCVTIMEO %ld.%06ld",
	       (long)tmo_now.tv_sec, (long)tmo_now.tv_usec);
	expect(fcntl(inner[1][1], F_GETFL) & O_NONBLOCK, "dgram end 1 lost O_NONBLOCK");
	expect(fcntl(inner[1][1], F_GETFD) & FD_CLOEXEC, "dgram end 1 lost close-on-exec");
	expect(!(fcntl(inner[1][0], F_GETFL) & O_NONBLOCK), "dgram end 0 got O_NONBLOCK");
	fcntl(dup_fd, F_SETFL, O_NONBLOCK);
	expect(fcntl(inner[1][0], F_GETFL) & O_NONBLOCK, "fd 200 is not dgram end 0's open file");
	fcntl(dup_fd, F_SETFL, 0);
	len = sizeof(peek_off);
	getsockopt(inner[2][1], SOL_SOCKET, SO_PEEK_OFF, &peek_off, &len);
	expect(peek_off == 5, "seqpacket end 1's peek offset is %d, not 5", peek_off);
	peek_off = -1;
	setsockopt(inner[2][1], SOL_SOCKET, SO_PEEK_OFF, &peek_off, sizeof(peek_off));

	for (int t = 0; t < 3; t++) {
		char what[32], buf[32];
		snprintf(what, sizeof(what), "inner %s", names[t]);
		expect_queued(inner[t], types[t], what);
		expect_working(inner[t], types[t], what);

		snprintf(what, sizeof(what), "split %s", names[t]);
		ssize_t n = take(split[t][0], types[t], buf, 5);
		expect(n == 5 && !memcmp(buf, "reply", 5), "%s: reply %zd", what, n);
		n = take(split[t][0], types[t], buf, 10);
		expect(n == 10 && !memcmp(buf, "from-child", 10), "%s: child's %zd", what, n);
		send(split[t][0], "from-parent", 11, 0);

		snprintf(what, sizeof(what), "half %s", names[t]);
		n = take(half[t][1], types[t], buf, 3);
		expect(n == 3 && !memcmp(buf, "bye", 3), "%s: bye %zd", what, n);
		if (types[t] == SOCK_SEQPACKET)
			expect(take(half[t][1], types[t], buf, sizeof(buf)) == 0, "%s: empty", what);
		if (types[t] != SOCK_DGRAM)  /* the end: read gives 0 at once, for ever */
			expect(recv(half[t][1], buf, sizeof(buf), MSG_DONTWAIT) == 0, "%s: no end", what);
		else
			expect(nothing_more(half[t][1]), "%s: more than queued", what);
		expect(send(half[t][0], "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE,
		       "%s: end 0 can write again", what);
		expect(send(half[t][1], "still", 5, MSG_NOSIGNAL) == 5, "%s: end 1 cannot write: %s",
		       what, strerror(errno));
		expect(take(half[t][0], types[t], buf, 5) == 5 && !memcmp(buf, "still", 5),
		       "%s: still", what);
	}

	static char bulk_back[BULK];
	ssize_t n = take(bulk[1], SOCK_STREAM, bulk_back, BULK);
	expect(n == BULK && !memcmp(bulk_back, bulk_data, BULK), "bulk: %zd bytes back", n);
	expect(nothing_more(bulk[1]), "bulk: more than was queued");
	expect_working(bulk, SOCK_STREAM, "bulk");

	expect(take(shared[1], SOCK_STREAM, &c, 1) == 1 && c == 'c', "shared: the child's byte");
	expect_working(shared, SOCK_STREAM, "shared");
	int status;
	expect(waitpid(kid, &status, 0) == kid && WIFEXITED(status) && !WEXITSTATUS(status),
	       "the child failed its checks (status 0x%x)", status);
	return report();
}
