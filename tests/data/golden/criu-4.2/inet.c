/* The program of the inet golden images: CRIU 4.2 dumped it with
 * --tcp-established --network-lock nftables once it printed "ready".
 *   fd 3  TCP listener on 127.0.0.1:47011, backlog 5, SO_REUSEADDR
 *   fd 4  the client end of a connection to it: 5 bytes sent, unread
 *   fd 5  the server end: 6 bytes sent ("server"), unread; TCP_NODELAY
 *   fd 6  UDP bound to ::1:47012, connected to ::1:47013, shut down for writing
 *   fd 7  UDP on 0.0.0.0, SO_BROADCAST, IP_TOS 0x10
 *   fd 8  TCP on ::, IPV6_V6ONLY, listening, SO_KEEPALIVE with TCP_KEEPIDLE 30 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
	int one = 1, idle = 30, tos = 0x10;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(47011) };
	struct sockaddr_in6 b = { .sin6_family = AF_INET6, .sin6_port = htons(47012),
				  .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	struct sockaddr_in6 c = b, d = { .sin6_family = AF_INET6, .sin6_port = htons(47014) };
	int l = socket(AF_INET, SOCK_STREAM, 0), cl, sv, u6, u4, l6;

	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	bind(l, (void *)&a, sizeof(a));
	listen(l, 5);
	cl = socket(AF_INET, SOCK_STREAM, 0);
	connect(cl, (void *)&a, sizeof(a));
	sv = accept(l, NULL, NULL);
	send(cl, "hello", 5, 0);
	send(sv, "server", 6, 0);
	setsockopt(sv, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	u6 = socket(AF_INET6, SOCK_DGRAM, 0);
	bind(u6, (void *)&b, sizeof(b));
	c.sin6_port = htons(47013);
	connect(u6, (void *)&c, sizeof(c));
	shutdown(u6, SHUT_WR);
	u4 = socket(AF_INET, SOCK_DGRAM, 0);
	setsockopt(u4, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one));
	setsockopt(u4, IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
	l6 = socket(AF_INET6, SOCK_STREAM, 0);
	setsockopt(l6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	setsockopt(l6, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(l6, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	bind(l6, (void *)&d, sizeof(d));
	listen(l6, 2);
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
