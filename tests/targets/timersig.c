/* Signal fds and timer fds: after a restore each has what it had.
 *   sfd    signalfd for SIGUSR2 and SIGRTMIN+2, O_NONBLOCK: a SIGUSR2 raised
 *          after the restore is read from it, nothing else is waiting
 *   slow   CLOCK_MONOTONIC, 30 s left, every 100 ms: still about 30 s left
 *   done   CLOCK_MONOTONIC, expired once before the dump, never read:
 *          one expiration to read, then nothing (O_NONBLOCK)
 *   alarm  CLOCK_REALTIME, absolute, 100 s from the start: still ahead
 *   fired  every 50 ms, fired and never read when dumped: it keeps firing
 *          (CRIU 4.2 brings such a timer back disarmed, issue 13) */
#include "harness.h"
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>

static int timer(int clock, int flags, time_t sec, long nsec, long interval_ns)
{
	int fd = timerfd_create(clock, 0);
	struct itimerspec its = { { 0, interval_ns }, { sec, nsec } };
	if (flags & TFD_TIMER_ABSTIME) {
		struct timespec now;
		clock_gettime(clock, &now);
		its.it_value.tv_sec += now.tv_sec;
	}
	timerfd_settime(fd, flags, &its, NULL);
	return fd;
}

static double left(int fd, long *interval_ns)
{
	struct itimerspec its;
	timerfd_gettime(fd, &its);
	if (interval_ns)
		*interval_ns = its.it_interval.tv_sec * 1000000000L + its.it_interval.tv_nsec;
	return its.it_value.tv_sec + its.it_value.tv_nsec / 1e9;
}

int main(void)
{
	harness_init();
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR2);
	sigaddset(&mask, SIGRTMIN + 2);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sfd = signalfd(-1, &mask, SFD_NONBLOCK);
	int slow = timer(CLOCK_MONOTONIC, 0, 30, 0, 100000000);
	int done = timer(CLOCK_MONOTONIC, 0, 0, 1000000, 0);
	int alarm = timer(CLOCK_REALTIME, TFD_TIMER_ABSTIME, 100, 0, 0);
	int fired = timer(CLOCK_MONOTONIC, 0, 0, 50000000, 50000000);
	fcntl(done, F_SETFL, O_NONBLOCK);
	usleep(120000);  /* "done" expires, "fired" fires twice, unread */
	ready("sfd=%d slow=%d done=%d alarm=%d fired=%d", sfd, slow, done, alarm, fired);
	wait_for_check();

	struct signalfd_siginfo si;
	expect(read(sfd, &si, sizeof(si)) < 0 && errno == EAGAIN, "sfd: something to read already");
	raise(SIGUSR2);
	expect(read(sfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo == SIGUSR2,
	       "sfd: SIGUSR2 not read");
	long interval;
	double s = left(slow, &interval);
	expect(s > 20 && s <= 30, "slow: %.3f s left", s);
	expect(interval == 100000000, "slow: interval %ld ns", interval);
	uint64_t ticks = 0;
	expect(read(done, &ticks, 8) == 8 && ticks == 1, "done: %llu expirations",
	       (unsigned long long)ticks);
	expect(read(done, &ticks, 8) < 0 && errno == EAGAIN, "done: more than one expiration");
	double a = left(alarm, NULL);
	expect(a > 50 && a <= 100, "alarm: %.3f s left", a);
	for (int round = 0; round < 3; round++) {
		struct pollfd p = { .fd = fired, .events = POLLIN };
		expect(poll(&p, 1, 1000) == 1, "fired: no expiration within 1 s (round %d)", round);
		expect(read(fired, &ticks, 8) == 8 && ticks >= 1, "fired: round %d", round);
	}
	return report();
}
