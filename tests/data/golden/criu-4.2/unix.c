/* Golden unix sockets: the parent binds a datagram socket at
 * /tmp/golden/unix-outside.sock and forks the dumped child, which holds:
 *   a stream pair with data queued both ways, one end shut down for writing
 *   a datagram pair with a pipe's read end passed in its queue (SCM_RIGHTS)
 *   a stream listener at /tmp/golden/unix-listen.sock (mode 0640), with one
 *   connection accepted and one waiting to be accepted
 *   a datagram socket bound to the relative name "unix-rel.sock" (cwd
 *   /tmp/golden) with a datagram queued from one bound to an abstract name
 *   a datagram socket bound to /tmp/golden/unix-gone.sock, unlinked since
 *   a datagram socket connected to the parent's (outside the dumped tree)
 * It prints "ready CHILD-PID" and sleeps; dumped with
 *   criu dump -t CHILD-PID -D images -v4 -o dump.log --ext-unix-sk */
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static socklen_t addr(struct sockaddr_un *a, const char *name, int abstract)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	strcpy(a->sun_path + (abstract ? 1 : 0), name);
	return offsetof(struct sockaddr_un, sun_path) + (abstract ? 1 : 0) + strlen(name);
}

static int bound(int type, const char *name, int abstract)
{
	struct sockaddr_un a;
	socklen_t len = addr(&a, name, abstract);
	int s = socket(AF_UNIX, type, 0);
	unlink(name);
	bind(s, (struct sockaddr *)&a, len);
	return s;
}

static int connected(int type, const char *name, int abstract)
{
	struct sockaddr_un a;
	socklen_t len = addr(&a, name, abstract);
	int s = socket(AF_UNIX, type, 0);
	connect(s, (struct sockaddr *)&a, len);
	return s;
}

int main(void)
{
	int sv[2], dv[2], p[2];
	char space[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = "f", .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = space,
			    .msg_controllen = sizeof(space) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	struct sockaddr_un a;

	if (chdir("/tmp/golden"))
		return 1;
	int outside = bound(SOCK_DGRAM, "/tmp/golden/unix-outside.sock", 0);
	pid_t child = fork();
	if (child) {
		for (;;)
			pause();
	}
	close(outside);
	setsid();

	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	send(sv[0], "to one", 6, 0);
	send(sv[1], "to zero", 7, 0);
	shutdown(sv[1], SHUT_WR);

	socketpair(AF_UNIX, SOCK_DGRAM, 0, dv);
	pipe(p);
	write(p[1], "piped", 5);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &p[0], sizeof(int));
	sendmsg(dv[0], &m, 0);
	close(p[0]);

	int listener = bound(SOCK_STREAM, "/tmp/golden/unix-listen.sock", 0);
	chmod("/tmp/golden/unix-listen.sock", 0640);
	listen(listener, 4);
	int client = connected(SOCK_STREAM, "/tmp/golden/unix-listen.sock", 0);
	int accepted = accept(listener, NULL, NULL);
	int waiting = connected(SOCK_STREAM, "/tmp/golden/unix-listen.sock", 0);

	int rel = bound(SOCK_DGRAM, "unix-rel.sock", 0);
	int sender = bound(SOCK_DGRAM, "golden-sender", 1);
	sendto(sender, "hello", 5, 0, (struct sockaddr *)&a, addr(&a, "unix-rel.sock", 0));

	int gone = bound(SOCK_DGRAM, "/tmp/golden/unix-gone.sock", 0);
	unlink("/tmp/golden/unix-gone.sock");

	int ext = connected(SOCK_DGRAM, "/tmp/golden/unix-outside.sock", 0);

	printf("ready %d\n", getpid());
	fflush(stdout);
	(void)client, (void)accepted, (void)waiting, (void)rel, (void)gone, (void)ext;
	for (;;)
		pause();
}
