/* An itimer and a POSIX timer that fire every 10 ms; after the check signal
 * both must still be firing. */
#include "harness.h"

#include <sys/time.h>
#include <time.h>

static volatile int alarms, timer_ticks;
static void on_alarm(int sig) { (void)sig; alarms++; }
static void on_timer(int sig) { (void)sig; timer_ticks++; }

int main(void)
{
	harness_init();
	signal(SIGALRM, on_alarm);
	signal(SIGRTMIN + 2, on_timer);
	struct itimerval it = { { 0, 10000 }, { 0, 10000 } };
	setitimer(ITIMER_REAL, &it, NULL);
	struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN + 2 };
	timer_t timer;
	timer_create(CLOCK_MONOTONIC, &sev, &timer);
	struct itimerspec its = { { 0, 10000000 }, { 0, 10000000 } };
	timer_settime(timer, 0, &its, NULL);
	ready("timer=%ld", (long)(intptr_t)timer);
	wait_for_check();
	int a = alarms, t = timer_ticks;
	struct timespec pause_for = { 0, 200000000 }, rem;
	while (nanosleep(&pause_for, &rem))
		pause_for = rem;
	expect(alarms - a >= 5, "itimer fired %d times in 200 ms", alarms - a);
	expect(timer_ticks - t >= 5, "posix timer fired %d times in 200 ms", timer_ticks - t);
	timer_t again;
	expect(timer_create(CLOCK_MONOTONIC, &sev, &again) == 0, "timer_create");
	return report();
}
