/* Live TCP connections on loopback, both ends in this process, with data
 * in flight both ways when the tree is dumped:
 *   v4      127.0.0.1: the client wrote BULK bytes of a pattern the server
 *           has not read (its receive queue full, the rest unsent or
 *           unacknowledged in the client's send queue); the server wrote
 *           "hello from the server", unread
 *   v6      ::1: the same with SMALL bytes, TCP_NODELAY on the client
 *   mapped  a dual-stack listener on ::, the client over IPv4 (the
 *           server's end is an IPv6 socket with v4-mapped addresses)
 *   half    127.0.0.1: the client shut down for writing after "bye" (the
 *           client is in FIN_WAIT2, the server in CLOSE_WAIT)
 * The listeners have SO_REUSEADDR, which the accepted ends inherit.
 * After the check signal each end reads exactly what was sent to it, byte
 * for byte, then new data goes both ways; the half-closed server reads
 * "bye" and the end, and can still write to the client. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#define BULK (4 << 20)
#define SMALL 70000
static const char hello[] = "hello from the server";

static int listener(int family, const char *addr)
{
	int fd = socket(family, SOCK_STREAM, 0), one = 1;
	/* the accepted ends inherit it: leaving repair mode must not lose it */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (family == AF_INET) {
		struct sockaddr_in a = { .sin_family = AF_INET };
		inet_pton(AF_INET, addr, &a.sin_addr);
		bind(fd, (void *)&a, sizeof(a));
	} else {
		struct sockaddr_in6 a = { .sin6_family = AF_INET6 };
		inet_pton(AF_INET6, addr, &a.sin6_addr);
		bind(fd, (void *)&a, sizeof(a));
	}
	listen(fd, 1);
	return fd;
}

static void pair(int family, const char *listen_addr, int cfamily, const char *addr, int *client,
		 int *server)
{
	int l = listener(family, listen_addr);
	struct sockaddr_in6 name;
	socklen_t len = sizeof(name);
	getsockname(l, (void *)&name, &len);
	*client = socket(cfamily, SOCK_STREAM, 0);
	if (cfamily == AF_INET) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = name.sin6_port };
		inet_pton(AF_INET, addr, &a.sin_addr);
		connect(*client, (void *)&a, sizeof(a));
	} else {
		struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = name.sin6_port };
		inet_pton(AF_INET6, addr, &a.sin6_addr);
		connect(*client, (void *)&a, sizeof(a));
	}
	*server = accept(l, NULL, NULL);
	close(l);
}

static char pattern(long i)
{
	return (char)(i * 7 + i / 251);
}

/* write as much of n pattern bytes as the socket takes without blocking */
static long fill(int fd, long n)
{
	static char chunk[65536];
	long done = 0;
	while (done < n) {
		long want = n - done > (long)sizeof(chunk) ? (long)sizeof(chunk) : n - done;
		for (long i = 0; i < want; i++)
			chunk[i] = pattern(done + i);
		long w = send(fd, chunk, want, MSG_DONTWAIT);
		if (w <= 0)
			break;
		done += w;
	}
	return done;
}

static int wait_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 5000) == 1;
}

/* read exactly n bytes and compare them with the pattern */
static int read_pattern(int fd, long n)
{
	static char chunk[65536];
	long got = 0;
	while (got < n) {
		if (!wait_readable(fd))
			return 0;
		long want = n - got > (long)sizeof(chunk) ? (long)sizeof(chunk) : n - got;
		long r = recv(fd, chunk, want, 0);
		if (r <= 0)
			return 0;
		for (long i = 0; i < r; i++)
			if (chunk[i] != pattern(got + i))
				return 0;
		got += r;
	}
	return 1;
}

static int read_exact(int fd, const char *what, int n)
{
	char buf[256];
	int got = 0;
	while (got < n) {
		if (!wait_readable(fd))
			return 0;
		int r = recv(fd, buf + got, n - got, 0);
		if (r <= 0)
			return 0;
		got += r;
	}
	return !memcmp(buf, what, n);
}

/* once the check starts, finish writing what did not fit, in the background
 * of our own reading: a child would be another process, so poll both */
static void pump(int writer, long from, long total, int reader, long expected, const char *what)
{
	static char chunk[65536];
	long sent = from, got = 0;
	while (got < expected || sent < total) {
		struct pollfd p[2] = { { .fd = reader, .events = POLLIN },
				       { .fd = writer, .events = sent < total ? POLLOUT : 0 } };
		if (poll(p, 2, 5000) <= 0) {
			expect(0, "%s: stalled at %ld of %ld read, %ld of %ld written", what, got,
			       expected, sent, total);
			return;
		}
		if (p[1].revents & POLLOUT) {
			long want = total - sent > (long)sizeof(chunk) ? (long)sizeof(chunk) : total - sent;
			for (long i = 0; i < want; i++)
				chunk[i] = pattern(sent + i);
			long w = send(writer, chunk, want, MSG_DONTWAIT);
			if (w > 0)
				sent += w;
		}
		if (p[0].revents & POLLIN) {
			long r = recv(reader, chunk, sizeof(chunk), MSG_DONTWAIT);
			if (r <= 0) {
				expect(0, "%s: read %ld: %m", what, r);
				return;
			}
			for (long i = 0; i < r; i++)
				if (chunk[i] != pattern(got + i)) {
					expect(0, "%s: byte %ld differs", what, got + i);
					return;
				}
			got += r;
		}
	}
}

int main(void)
{
	int c4, s4, c6, s6, cm, sm, ch, sh, one = 1;
	long sent4, sent6;
	char buf[8];

	harness_init();
	pair(AF_INET, "127.0.0.1", AF_INET, "127.0.0.1", &c4, &s4);
	pair(AF_INET6, "::1", AF_INET6, "::1", &c6, &s6);
	pair(AF_INET6, "::", AF_INET, "127.0.0.1", &cm, &sm);
	pair(AF_INET, "127.0.0.1", AF_INET, "127.0.0.1", &ch, &sh);
	setsockopt(c6, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	sent4 = fill(c4, BULK);
	send(s4, hello, sizeof(hello), 0);
	sent6 = fill(c6, SMALL);
	send(s6, hello, sizeof(hello), 0);
	send(cm, "mapped", 6, 0);
	send(ch, "bye", 3, 0);
	shutdown(ch, SHUT_WR);
	usleep(100000); /* the FIN and the ACKs on their way */
	ready("sent4=%ld sent6=%ld", sent4, sent6);
	wait_for_check();

	/* v4: the rest of BULK goes while the server reads it all */
	pump(c4, sent4, BULK, s4, BULK, "v4");
	expect(read_exact(c4, hello, sizeof(hello)), "v4: client did not get the server's hello");
	expect(send(c4, "more", 4, 0) == 4 && read_exact(s4, "more", 4), "v4: new data lost");
	pump(c6, sent6, SMALL, s6, SMALL, "v6");
	expect(read_exact(c6, hello, sizeof(hello)), "v6: client did not get the server's hello");
	expect(send(s6, "back", 4, 0) == 4 && read_exact(c6, "back", 4), "v6: new data lost");
	{
		int v = 0;
		socklen_t len = sizeof(v);
		getsockopt(c6, IPPROTO_TCP, TCP_NODELAY, &v, &len);
		expect(v == 1, "v6: TCP_NODELAY lost");
	}
	{
		int v = -1;
		socklen_t len = sizeof(v);
		getsockopt(s4, SOL_SOCKET, SO_REUSEADDR, &v, &len);
		expect(v == 1, "v4: the server end lost SO_REUSEADDR");
		getsockopt(c4, SOL_SOCKET, SO_REUSEADDR, &v, &len);
		expect(v == 0, "v4: the client end has SO_REUSEADDR");
	}
	expect(read_exact(sm, "mapped", 6), "mapped: server did not get it");
	expect(send(sm, "ok", 2, 0) == 2 && read_exact(cm, "ok", 2), "mapped: reply lost");
	expect(read_exact(sh, "bye", 3), "half: server did not get bye");
	expect(wait_readable(sh) && recv(sh, buf, 1, 0) == 0, "half: server did not see the end");
	expect(send(sh, "late", 4, 0) == 4 && read_exact(ch, "late", 4),
	       "half: the server cannot write to the half-closed client");
	expect(send(ch, "x", 1, MSG_NOSIGNAL) == -1 && errno == EPIPE,
	       "half: the client can write again");
	return report();
}
