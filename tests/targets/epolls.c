/* epoll instances and what they watch, shared with a child:
 *   E  (O_NONBLOCK) watches: the read end of a pipe with data (data 0x11),
 *      the write end (EPOLLOUT|EPOLLET, 0x22), a dup of the read end under
 *      another number (0x33), an eventfd with a count watched EPOLLONESHOT
 *      (0x44, fired once before the dump: disarmed), and N (0x55)
 *      an eventfd with a count (0x66) added as fd M, since moved to 600
 *      (dup2 + close), and a pipe's read end (0x77) added as fd K, moved
 *      to 601, with /dev/null at K now: watches keyed by numbers no fd of
 *      the file holds any more
 *   N  another epoll instance, watching an eventfd with a count: ready
 * After the check signal E reports 0x11, 0x33, 0x55 (and the write end,
 * whose edge the new watch reports once), not the disarmed one-shot; a
 * MOD re-arms it; a DEL by the dup's number removes just that watch. */
#include "harness.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>

static int watch(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };
	return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

/* bit i set when data (i+1)*0x11 was reported */
static int reported(int ep)
{
	struct epoll_event evs[16];
	int n = epoll_wait(ep, evs, 16, 0), seen = 0;
	for (int i = 0; i < n; i++)
		if (evs[i].data.u64 % 0x11 == 0 && evs[i].data.u64 <= 0x77)
			seen |= 1 << (evs[i].data.u64 / 0x11 - 1);
	return seen;
}

int main(void)
{
	harness_init();
	int p[2];
	pipe(p);
	write(p[1], "x", 1);
	int dup_r = dup(p[0]);
	int once = eventfd(1, 0), counted = eventfd(2, 0);
	int n = epoll_create1(0), e = epoll_create1(EPOLL_CLOEXEC);
	fcntl(e, F_SETFL, O_NONBLOCK);
	expect(!watch(n, counted, EPOLLIN, 7), "watch in N");
	expect(!watch(e, p[0], EPOLLIN, 0x11) && !watch(e, p[1], EPOLLOUT | EPOLLET, 0x22) &&
	       !watch(e, dup_r, EPOLLIN, 0x33) && !watch(e, once, EPOLLIN | EPOLLONESHOT, 0x44) &&
	       !watch(e, n, EPOLLIN, 0x55), "watch in E");
	int moved = eventfd(1, 0), q[2];
	pipe(q);
	expect(!watch(e, moved, EPOLLIN, 0x66) && !watch(e, q[0], EPOLLIN, 0x77), "watch moved");
	dup2(moved, 600);
	dup2(q[0], 601);
	close(q[0]);
	expect(open("/dev/null", O_RDONLY) == q[0], "/dev/null did not take the freed number");
	close(moved);
	int before = reported(e); /* takes the one-shot and the write end's edge */
	pid_t child = fork();
	if (child == 0) {
		for (;;)
			pause();
	}
	ready("e=%d before=%x", e, before);
	wait_for_check();

	expect(before == 0x3f, "before the dump E reported %x", before);
	expect(fcntl(e, F_GETFL) & O_NONBLOCK, "E lost O_NONBLOCK");
	expect(fcntl(e, F_GETFD) & FD_CLOEXEC, "E lost close-on-exec");
	int now = reported(e);
	expect((now & ~0x2) == 0x35, "after the restore E reported %x", now);
	write(q[1], "y", 1);
	expect(reported(e) & 0x40, "the moved pipe's watch is deaf");
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = 0x44 };
	expect(!epoll_ctl(e, EPOLL_CTL_MOD, once, &ev), "MOD of the one-shot: %m");
	expect(reported(e) & 0x8, "the re-armed one-shot is not reported");
	expect(!epoll_ctl(e, EPOLL_CTL_DEL, dup_r, NULL), "DEL by the dup's number: %m");
	now = reported(e);
	expect((now & 0x35) == 0x31, "after DEL E reported %x", now);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return report();
}
