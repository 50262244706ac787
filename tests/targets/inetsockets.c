/* Inet sockets that are no TCP connection, held across a checkpoint:
 *   udp4     UDP bound to 127.0.0.1 (port in READY: udp4=): after the
 *            restore the test sends it a datagram, which it must receive
 *   udp6     UDP bound to ::1, connected to udp6b
 *   udp6b    UDP on ::1: receives what udp6 sends after the restore
 *   udpshut  UDP connected to udp4, shut down for reading
 *   lite     UDP-Lite bound to 127.0.0.1
 *   l4       TCP listener on 127.0.0.1 (port l4=), backlog 7, SO_REUSEADDR
 *   l6       TCP listener on ::1, IPV6_V6ONLY (port l6=)
 *   ldual    TCP listener on :: (dual stack; port ldual=): the test
 *            connects to it over IPv4
 *   unbound  TCP socket never bound, with options: SO_KEEPALIVE with
 *            TCP_KEEPIDLE/INTVL/CNT, SO_LINGER, SO_PRIORITY, SO_RCVBUF,
 *            SO_MARK, TCP_NODELAY, IP_TOS, IP_TTL, a socket filter
 *   bound    TCP socket bound to 127.0.0.1, not listening, IP_FREEBIND,
 *            SO_REUSEPORT, O_NONBLOCK
 *   bcast    UDP with SO_BROADCAST
 *   ping     ICMP echo socket (SOCK_DGRAM, IPPROTO_ICMP) when allowed
 *   raw4     raw ICMP socket with an ICMP_FILTER, bound to 127.0.0.1
 *   raw6     raw ICMPv6 socket with an ICMPV6_FILTER
 *   rawhdr   raw socket (IPPROTO_RAW: IP_HDRINCL) with IP_NODEFRAG
 * After the check signal: each socket still is what it was (getsockname,
 * options), udp4 has the test's datagram, udp6 -> udp6b works, the
 * listeners accept the connections the test made. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <linux/filter.h>
#include <linux/icmp.h>
#include <netinet/icmp6.h>
#include <poll.h>
#include <sys/socket.h>

static int wait_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 5000) == 1;
}

static int bound(int family, int type, int proto, const char *addr)
{
	int fd = socket(family, type, proto);
	if (family == AF_INET) {
		struct sockaddr_in a = { .sin_family = AF_INET };
		inet_pton(AF_INET, addr, &a.sin_addr);
		bind(fd, (void *)&a, sizeof(a));
	} else {
		struct sockaddr_in6 a = { .sin6_family = AF_INET6 };
		inet_pton(AF_INET6, addr, &a.sin6_addr);
		bind(fd, (void *)&a, sizeof(a));
	}
	return fd;
}

static int port_of(int fd)
{
	struct sockaddr_in6 a;
	socklen_t len = sizeof(a);
	getsockname(fd, (void *)&a, &len);
	return ntohs(a.sin6_port); /* same place in sockaddr_in */
}

static int opt(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);
	getsockopt(fd, level, name, &v, &len);
	return v;
}

static void set(int fd, int level, int name, int v)
{
	setsockopt(fd, level, name, &v, sizeof(v));
}

static void connect_to(int fd, int family, const char *addr, int port)
{
	if (family == AF_INET) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
		inet_pton(AF_INET, addr, &a.sin_addr);
		connect(fd, (void *)&a, sizeof(a));
	} else {
		struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
		inet_pton(AF_INET6, addr, &a.sin6_addr);
		connect(fd, (void *)&a, sizeof(a));
	}
}

static void expect_accept(int l, const char *what)
{
	int c;
	expect(wait_readable(l), "%s: no connection to accept", what);
	c = accept(l, NULL, NULL);
	expect(c >= 0, "%s: accept: %m", what);
	close(c);
}

int main(void)
{
	struct sock_filter code[] = {
		{ 0x06, 0, 0, 0x0000ffff }, /* ret #65535: accept everything */
	};
	struct sock_fprog prog = { .len = 1, .filter = code };
	struct sock_filter got_code[4];
	socklen_t len;
	struct linger linger = { 1, 17 }, got_linger;
	char buf[64];
	int udp4, udp6, udp6b, udpshut, lite, l4, l6, ldual, unbound, bnd, bcast, ping;
	int raw4, raw6, rawhdr;
	struct icmp_filter f4 = { .data = 0x1234 }, got_f4;
	struct icmp6_filter f6, got_f6;
	int p_udp4, p_l4, p_l6, p_ldual, p_bound, n, rcvbuf;

	harness_init();
	udp4 = bound(AF_INET, SOCK_DGRAM, 0, "127.0.0.1");
	p_udp4 = port_of(udp4);
	udp6b = bound(AF_INET6, SOCK_DGRAM, 0, "::1");
	udp6 = bound(AF_INET6, SOCK_DGRAM, 0, "::1");
	connect_to(udp6, AF_INET6, "::1", port_of(udp6b));
	udpshut = socket(AF_INET, SOCK_DGRAM, 0);
	connect_to(udpshut, AF_INET, "127.0.0.1", p_udp4);
	shutdown(udpshut, SHUT_RD);
	lite = bound(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE, "127.0.0.1");

	l4 = socket(AF_INET, SOCK_STREAM, 0);
	set(l4, SOL_SOCKET, SO_REUSEADDR, 1);
	l4 = (close(l4), bound(AF_INET, SOCK_STREAM, 0, "127.0.0.1"));
	listen(l4, 7);
	p_l4 = port_of(l4);
	l6 = socket(AF_INET6, SOCK_STREAM, 0);
	set(l6, IPPROTO_IPV6, IPV6_V6ONLY, 1);
	{
		struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
		bind(l6, (void *)&a, sizeof(a));
	}
	listen(l6, 3);
	p_l6 = port_of(l6);
	ldual = bound(AF_INET6, SOCK_STREAM, 0, "::");
	listen(ldual, 5);
	p_ldual = port_of(ldual);

	unbound = socket(AF_INET, SOCK_STREAM, 0);
	set(unbound, SOL_SOCKET, SO_KEEPALIVE, 1);
	set(unbound, IPPROTO_TCP, TCP_KEEPIDLE, 33);
	set(unbound, IPPROTO_TCP, TCP_KEEPINTVL, 7);
	set(unbound, IPPROTO_TCP, TCP_KEEPCNT, 5);
	setsockopt(unbound, SOL_SOCKET, SO_LINGER, &linger, sizeof(linger));
	set(unbound, IPPROTO_IP, IP_TOS, 0x10); /* before SO_PRIORITY: it sets the priority too */
	set(unbound, SOL_SOCKET, SO_PRIORITY, 4);
	set(unbound, SOL_SOCKET, SO_RCVBUF, 50000);
	rcvbuf = opt(unbound, SOL_SOCKET, SO_RCVBUF);
	set(unbound, SOL_SOCKET, SO_MARK, 0x77);
	set(unbound, IPPROTO_TCP, TCP_NODELAY, 1);
	set(unbound, IPPROTO_IP, IP_TTL, 42);
	setsockopt(unbound, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog));

	bnd = socket(AF_INET, SOCK_STREAM, 0);
	set(bnd, IPPROTO_IP, IP_FREEBIND, 1);
	set(bnd, SOL_SOCKET, SO_REUSEPORT, 1);
	bnd = (close(bnd), socket(AF_INET, SOCK_STREAM, 0));
	set(bnd, IPPROTO_IP, IP_FREEBIND, 1);
	set(bnd, SOL_SOCKET, SO_REUSEPORT, 1);
	{
		struct sockaddr_in a = { .sin_family = AF_INET };
		inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
		bind(bnd, (void *)&a, sizeof(a));
	}
	p_bound = port_of(bnd);
	fcntl(bnd, F_SETFL, O_NONBLOCK);
	bcast = socket(AF_INET, SOCK_DGRAM, 0);
	set(bcast, SOL_SOCKET, SO_BROADCAST, 1);
	ping = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
	raw4 = bound(AF_INET, SOCK_RAW, IPPROTO_ICMP, "127.0.0.1");
	setsockopt(raw4, SOL_RAW, ICMP_FILTER, &f4, sizeof(f4));
	raw6 = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
	ICMP6_FILTER_SETBLOCKALL(&f6);
	ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &f6);
	setsockopt(raw6, IPPROTO_ICMPV6, ICMP6_FILTER, &f6, sizeof(f6));
	rawhdr = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	set(rawhdr, IPPROTO_IP, 22 /* IP_NODEFRAG */, 1);

	ready("udp4=%d l4=%d l6=%d ldual=%d ping=%d", p_udp4, p_l4, p_l6, p_ldual, ping >= 0);
	wait_for_check();

	/* what the test sent to udp4 after the restore */
	expect(wait_readable(udp4), "udp4: no datagram");
	n = recv(udp4, buf, sizeof(buf), MSG_DONTWAIT);
	expect(n == 5 && !memcmp(buf, "hello", 5), "udp4: got %d bytes", n);
	expect(port_of(udp4) == p_udp4, "udp4: port %d", port_of(udp4));
	n = send(udp6, "six", 3, 0);
	expect(n == 3, "udp6: send: %m");
	expect(wait_readable(udp6b), "udp6b: nothing from udp6");
	n = recv(udp6b, buf, sizeof(buf), MSG_DONTWAIT);
	expect(n == 3 && !memcmp(buf, "six", 3), "udp6b: got %d bytes", n);
	n = send(udpshut, "x", 1, 0);
	expect(n == 1, "udpshut: cannot send: %m");
	expect(wait_readable(udp4) && recv(udp4, buf, sizeof(buf), 0) == 1, "udp4: not from udpshut");
	{
		struct pollfd p = { .fd = udpshut, .events = POLLRDHUP };
		expect(poll(&p, 1, 0) == 1 && (p.revents & POLLRDHUP), "udpshut: not shut down for reading");
	}
	expect(opt(lite, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_UDPLITE, "lite: protocol");

	expect_accept(l4, "l4");
	expect(port_of(l4) == p_l4, "l4: port");
	expect(opt(l4, SOL_SOCKET, SO_REUSEADDR) == 0, "l4: SO_REUSEADDR %d", opt(l4, SOL_SOCKET, SO_REUSEADDR));
	expect(opt(l4, SOL_SOCKET, SO_ACCEPTCONN) == 1, "l4: not listening");
	expect_accept(l6, "l6");
	expect(opt(l6, IPPROTO_IPV6, IPV6_V6ONLY) == 1, "l6: not v6only");
	expect_accept(ldual, "ldual (over IPv4)");
	expect(opt(ldual, IPPROTO_IPV6, IPV6_V6ONLY) == 0, "ldual: v6only");

	expect(opt(unbound, SOL_SOCKET, SO_KEEPALIVE) == 1, "unbound: keepalive");
	expect(opt(unbound, IPPROTO_TCP, TCP_KEEPIDLE) == 33, "unbound: keepidle");
	expect(opt(unbound, IPPROTO_TCP, TCP_KEEPINTVL) == 7, "unbound: keepintvl");
	expect(opt(unbound, IPPROTO_TCP, TCP_KEEPCNT) == 5, "unbound: keepcnt");
	len = sizeof(got_linger);
	getsockopt(unbound, SOL_SOCKET, SO_LINGER, &got_linger, &len);
	expect(got_linger.l_onoff && got_linger.l_linger == 17, "unbound: linger");
	expect(opt(unbound, SOL_SOCKET, SO_PRIORITY) == 4, "unbound: priority");
	expect(opt(unbound, SOL_SOCKET, SO_RCVBUF) == rcvbuf, "unbound: rcvbuf %d", opt(unbound, SOL_SOCKET, SO_RCVBUF));
	expect(opt(unbound, SOL_SOCKET, SO_MARK) == 0x77, "unbound: mark");
	expect(opt(unbound, IPPROTO_TCP, TCP_NODELAY) == 1, "unbound: nodelay");
	expect(opt(unbound, IPPROTO_IP, IP_TOS) == 0x10, "unbound: tos");
	expect(opt(unbound, IPPROTO_IP, IP_TTL) == 42, "unbound: ttl");
	len = 4;
	expect(getsockopt(unbound, SOL_SOCKET, SO_GET_FILTER, got_code, &len) == 0 && len == 1 &&
	       got_code[0].k == 0xffff, "unbound: filter (%u instructions)", len);
	expect(port_of(unbound) == 0, "unbound: bound");

	expect(port_of(bnd) == p_bound, "bound: port %d, was %d", port_of(bnd), p_bound);
	expect(opt(bnd, IPPROTO_IP, IP_FREEBIND) == 1, "bound: freebind");
	expect(opt(bnd, SOL_SOCKET, SO_REUSEPORT) == 1, "bound: reuseport");
	expect(fcntl(bnd, F_GETFL) & O_NONBLOCK, "bound: O_NONBLOCK");
	expect(opt(bcast, SOL_SOCKET, SO_BROADCAST) == 1, "bcast: SO_BROADCAST");
	if (ping >= 0)
		expect(opt(ping, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_ICMP, "ping: protocol");
	len = sizeof(got_f4);
	expect(getsockopt(raw4, SOL_RAW, ICMP_FILTER, &got_f4, &len) == 0 && got_f4.data == 0x1234,
	       "raw4: ICMP_FILTER");
	expect(opt(raw4, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_ICMP, "raw4: protocol");
	{
		struct sockaddr_in a;
		socklen_t alen = sizeof(a);
		getsockname(raw4, (void *)&a, &alen);
		expect(a.sin_addr.s_addr == htonl(INADDR_LOOPBACK), "raw4: not bound to 127.0.0.1");
	}
	len = sizeof(got_f6);
	expect(getsockopt(raw6, IPPROTO_ICMPV6, ICMP6_FILTER, &got_f6, &len) == 0 &&
	       !memcmp(&got_f6, &f6, sizeof(f6)), "raw6: ICMPV6_FILTER");
	expect(opt(rawhdr, IPPROTO_IP, IP_HDRINCL) == 1, "rawhdr: IP_HDRINCL");
	expect(opt(rawhdr, IPPROTO_IP, 22) == 1, "rawhdr: IP_NODEFRAG");
	return report();
}
