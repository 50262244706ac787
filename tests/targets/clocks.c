/* Calls clock_gettime, gettimeofday, time and getcpu (all through the vdso)
 * in a loop; after the check signal it keeps calling them for a while and
 * checks the answers are sane and the monotonic clock never goes back. */
#include "harness.h"

#include <sched.h>
#include <sys/time.h>
#include <time.h>

static struct timespec last;
static unsigned long calls, bad;

static void one_round(void)
{
	struct timespec mono, real;
	struct timeval tv;
	if (clock_gettime(CLOCK_MONOTONIC, &mono) || (mono.tv_sec < last.tv_sec) ||
	    (mono.tv_sec == last.tv_sec && mono.tv_nsec < last.tv_nsec))
		bad++;
	last = mono;
	if (clock_gettime(CLOCK_REALTIME, &real) || real.tv_sec < 1700000000)
		bad++;
	if (gettimeofday(&tv, NULL) || tv.tv_sec < 1700000000)
		bad++;
	if (time(NULL) < 1700000000)
		bad++;
	if (sched_getcpu() < 0)
		bad++;
	calls++;
}

int main(void)
{
	harness_init();
	ready("clocks=1");
	while (!check_requested) {
		one_round();
		usleep(2000);
	}
	unsigned long before = calls;
	for (int i = 0; i < 10000; i++)
		one_round();
	expect(calls - before == 10000 && bad == 0, "%lu bad answers in %lu calls", bad, calls);
	return report();
}
