/* Every kind of timer, in the states that are hard to bring back:
 *
 *   itimers: ITIMER_VIRTUAL and ITIMER_PROF run on the CPU time a burner
 *     thread uses; argv[1] says which of them fires every 10 ms and which
 *     is a one-shot of an hour whose remaining time must not be reset
 *     ("virtual": VIRTUAL fires, PROF and REAL wait; "prof": PROF and REAL
 *     fire, VIRTUAL waits);
 *   POSIX timers on CLOCK_MONOTONIC, _REALTIME, _BOOTTIME,
 *     _PROCESS_CPUTIME_ID and the burner thread's CPU clock
 *     (pthread_getcpuclockid), each firing every 10 ms; one-shots of an hour
 *     (SIGEV_SIGNAL, SIGEV_NONE, the main thread's CLOCK_THREAD_CPUTIME_ID)
 *     whose remaining time must be kept; a periodic SIGEV_NONE one; a timer
 *     never armed and one disarmed after it fired, which must stay quiet; a
 *     one-shot of 2 s that must fire exactly once;
 *   a 1 ms timer whose signal stays blocked: one signal is pending for it
 *     at the dump, and after the restore there must still be exactly one,
 *     the timer's own (it carries the overrun count, and the timer is
 *     re-armed when it is taken);
 *   ids with gaps: the first five timers get ids 0-4 and 0 and 2 are
 *     deleted; the last timer made is deleted too, so the next
 *     timer_create() must give the id after it, not reuse it.
 *
 * READY prints the ids; the tests compare /proc/PID/timers across the dump. */
#include "harness.h"

#include <errno.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

#define TICK_SIGNAL (SIGRTMIN + 2)
#define OVERRUN_SIGNAL (SIGRTMIN + 4)
#define HOUR 3600
#define MS 1000000L

enum { GAP0, NEVER_ARMED, GAP2, DISARMED, NONE_ONESHOT, NONE_PERIODIC, MONOTONIC,
       REALTIME, BOOTTIME, PROCESS_CPU, BURNER_CPU, OWN_THREAD_CPU, TWO_SECONDS,
       OVERRUN, SIGNAL_ONESHOT, LAST_DELETED, TIMERS };

static timer_t timers[TIMERS];
static volatile int ticks[TIMERS];
static volatile int virtual_ticks, prof_ticks, real_ticks;
static pid_t burner_tid;

static void on_tick(int sig, siginfo_t *info, void *ctx)
{
	(void)sig, (void)ctx;
	int which = info->si_value.sival_int;
	if (which >= 0 && which < TIMERS)
		ticks[which]++;
}
static void on_virtual(int sig) { (void)sig; virtual_ticks++; }
static void on_prof(int sig) { (void)sig; prof_ticks++; }
static void on_real(int sig) { (void)sig; real_ticks++; }

static void *burn(void *arg)
{
	(void)arg;
	__atomic_store_n(&burner_tid, (pid_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
	for (volatile unsigned long spins = 0;; spins++)
		;
	return NULL;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_for(double seconds)
{
	struct timespec left = { (time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9) };
	while (nanosleep(&left, &left))
		;
}

static double seconds_of(struct timespec ts) { return ts.tv_sec + ts.tv_nsec / 1e9; }
static double seconds_tv(struct timeval tv) { return tv.tv_sec + tv.tv_usec / 1e6; }

static timer_t make(int which, clockid_t clock, int notify, int signo)
{
	struct sigevent sev = { .sigev_notify = notify, .sigev_signo = signo };
	sev.sigev_value.sival_int = which;
	if (timer_create(clock, &sev, &timers[which])) {
		printf("timer_create %d: %s\n", which, strerror(errno));
		exit(2);
	}
	return timers[which];
}

static void arm(int which, long first_ns, long every_ns)
{
	struct itimerspec its = { { every_ns / 1000000000, every_ns % 1000000000 },
				  { first_ns / 1000000000, first_ns % 1000000000 } };
	timer_settime(timers[which], 0, &its, NULL);
}

static double remaining(int which)
{
	struct itimerspec its;
	timer_gettime(timers[which], &its);
	return seconds_of(its.it_value);
}

static double interval(int which)
{
	struct itimerspec its;
	timer_gettime(timers[which], &its);
	return seconds_of(its.it_interval);
}

/* Poll until every periodic timer has fired a few more times (CPU timers
 * need the burner to get a CPU, which a busy machine gives slowly). */
static void wait_for_ticks(int virtual_fires)
{
	static const int periodic[] = { MONOTONIC, REALTIME, BOOTTIME, PROCESS_CPU, BURNER_CPU };
	int start[TIMERS], v = virtual_ticks, p = prof_ticks, r = real_ticks;
	for (int i = 0; i < TIMERS; i++)
		start[i] = ticks[i];
	double deadline = now() + 15;
	int pending;
	do {
		sleep_for(0.01);
		pending = 0;
		for (unsigned i = 0; i < sizeof(periodic) / sizeof(*periodic); i++)
			pending += ticks[periodic[i]] - start[periodic[i]] < 3;
		pending += virtual_fires ? virtual_ticks - v < 3 : (prof_ticks - p < 3 || real_ticks - r < 3);
	} while (pending && now() < deadline);
	for (unsigned i = 0; i < sizeof(periodic) / sizeof(*periodic); i++)
		expect(ticks[periodic[i]] - start[periodic[i]] >= 3, "timer %d (id %ld) fired %d times",
		       periodic[i], (long)(intptr_t)timers[periodic[i]], ticks[periodic[i]] - start[periodic[i]]);
	if (virtual_fires)
		expect(virtual_ticks - v >= 3, "ITIMER_VIRTUAL fired %d times", virtual_ticks - v);
	else
		expect(prof_ticks - p >= 3 && real_ticks - r >= 3, "ITIMER_PROF fired %d times, "
		       "ITIMER_REAL %d times", prof_ticks - p, real_ticks - r);
}

/* The blocked 1 ms timer: exactly one signal pending, its own, counting
 * every expiry since it was queued (at the latest when the check began). */
static void check_overrun_timer(double check_began)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, OVERRUN_SIGNAL);
	struct timespec zero = { 0, 0 };
	siginfo_t info, first = { 0 };
	int taken = 0;
	while (now() < check_began + 0.1)
		sleep_for(0.01);
	double waited = now() - check_began;
	while (sigtimedwait(&set, &info, &zero) == OVERRUN_SIGNAL)
		if (!taken++)
			first = info;
	expect(taken == 1, "%d signals pending for the blocked timer, not 1", taken);
	expect(first.si_code == SI_TIMER && first.si_timerid == (int)(intptr_t)timers[OVERRUN],
	       "the pending signal is not the timer's (code %d, timer %d)", first.si_code,
	       first.si_timerid);
	expect(first.si_overrun >= (int)(waited * 1000) - 2, "overrun %d after %.3f s of a 1 ms timer",
	       first.si_overrun, waited);
	expect(timer_getoverrun(timers[OVERRUN]) == first.si_overrun, "timer_getoverrun %d != %d",
	       timer_getoverrun(timers[OVERRUN]), first.si_overrun);
	sleep_for(0.02);
	taken = 0;
	while (sigtimedwait(&set, &info, &zero) == OVERRUN_SIGNAL)
		taken++;
	expect(taken == 1 && info.si_overrun >= 5, "re-armed timer: %d signals, overrun %d",
	       taken, info.si_overrun);
}

int main(int argc, char **argv)
{
	int virtual_fires = argc > 1 && !strcmp(argv[1], "virtual");
	harness_init();
	struct sigaction sa = { .sa_sigaction = on_tick, .sa_flags = SA_SIGINFO | SA_RESTART };
	sigemptyset(&sa.sa_mask);
	sigaction(TICK_SIGNAL, &sa, NULL);
	signal(SIGVTALRM, on_virtual);
	signal(SIGPROF, on_prof);
	signal(SIGALRM, on_real);
	sigset_t blocked;
	sigemptyset(&blocked);
	sigaddset(&blocked, OVERRUN_SIGNAL);
	sigprocmask(SIG_BLOCK, &blocked, NULL);  /* the burner inherits it */
	pthread_t burner = start_thread(burn, NULL, &burner_tid);

	for (int i = GAP0; i <= DISARMED; i++)
		make(i, CLOCK_MONOTONIC, SIGEV_SIGNAL, TICK_SIGNAL);
	timer_delete(timers[GAP0]);
	timer_delete(timers[GAP2]);
	make(NONE_ONESHOT, CLOCK_MONOTONIC, SIGEV_NONE, 0);
	make(NONE_PERIODIC, CLOCK_MONOTONIC, SIGEV_NONE, 0);
	make(MONOTONIC, CLOCK_MONOTONIC, SIGEV_SIGNAL, TICK_SIGNAL);
	make(REALTIME, CLOCK_REALTIME, SIGEV_SIGNAL, TICK_SIGNAL);
	make(BOOTTIME, CLOCK_BOOTTIME, SIGEV_SIGNAL, TICK_SIGNAL);
	make(PROCESS_CPU, CLOCK_PROCESS_CPUTIME_ID, SIGEV_SIGNAL, TICK_SIGNAL);
	clockid_t burner_clock;
	pthread_getcpuclockid(burner, &burner_clock);
	make(BURNER_CPU, burner_clock, SIGEV_SIGNAL, TICK_SIGNAL);
	make(OWN_THREAD_CPU, CLOCK_THREAD_CPUTIME_ID, SIGEV_SIGNAL, TICK_SIGNAL);
	make(TWO_SECONDS, CLOCK_MONOTONIC, SIGEV_SIGNAL, TICK_SIGNAL);
	make(OVERRUN, CLOCK_MONOTONIC, SIGEV_SIGNAL, OVERRUN_SIGNAL);
	make(SIGNAL_ONESHOT, CLOCK_MONOTONIC, SIGEV_SIGNAL, TICK_SIGNAL);
	make(LAST_DELETED, CLOCK_MONOTONIC, SIGEV_NONE, 0);
	timer_delete(timers[LAST_DELETED]);
	int next_id = (int)(intptr_t)timers[LAST_DELETED] + 1;

	arm(DISARMED, 10 * MS, 10 * MS);
	while (ticks[DISARMED] < 2)
		sleep_for(0.005);
	arm(DISARMED, 0, 0);
	arm(NONE_ONESHOT, HOUR * 1000 * MS, 0);
	arm(NONE_PERIODIC, 50 * MS, 50 * MS);
	for (int i = MONOTONIC; i <= BURNER_CPU; i++)
		arm(i, 10 * MS, 10 * MS);
	arm(OWN_THREAD_CPU, HOUR * 1000 * MS, 0);
	arm(OVERRUN, MS, MS);
	arm(SIGNAL_ONESHOT, HOUR * 1000 * MS, 0);
	struct itimerval every_10ms = { { 0, 10000 }, { 0, 10000 } }, in_an_hour = { { 0, 0 }, { HOUR, 0 } };
	setitimer(ITIMER_VIRTUAL, virtual_fires ? &every_10ms : &in_an_hour, NULL);
	setitimer(ITIMER_PROF, virtual_fires ? &in_an_hour : &every_10ms, NULL);
	setitimer(ITIMER_REAL, virtual_fires ? &in_an_hour : &every_10ms, NULL);
	sleep_for(0.05);  /* the burner has used CPU time, the 1 ms timer has fired */
	arm(TWO_SECONDS, 2000 * MS, 0);

	/* what must be kept, read just before READY */
	int quiet_before = ticks[NEVER_ARMED] + ticks[DISARMED];
	double none_left = remaining(NONE_ONESHOT), signal_left = remaining(SIGNAL_ONESHOT);
	double own_cpu_left = remaining(OWN_THREAD_CPU);
	struct itimerval virtual_was, prof_was, real_was;
	getitimer(ITIMER_VIRTUAL, &virtual_was);
	getitimer(ITIMER_PROF, &prof_was);
	getitimer(ITIMER_REAL, &real_was);
	double t0 = now();
	ready("ids=%ld,%ld,%ld,%ld next=%d", (long)(intptr_t)timers[NEVER_ARMED],
	      (long)(intptr_t)timers[DISARMED], (long)(intptr_t)timers[NONE_ONESHOT],
	      (long)(intptr_t)timers[LAST_DELETED], next_id);
	wait_for_check();
	double check_began = now(), elapsed = check_began - t0;

	/* remaining times: never more than before, never less than the time
	 * (wall, or CPU time of at most two CPUs) that ran since */
	double slack = 0.05;
	double left = remaining(NONE_ONESHOT);
	expect(left <= none_left && left >= none_left - elapsed - slack,
	       "SIGEV_NONE one-shot: %.3f s left, %.3f before, %.3f s since", left, none_left, elapsed);
	left = remaining(SIGNAL_ONESHOT);
	expect(left <= signal_left && left >= signal_left - elapsed - slack,
	       "one-shot: %.3f s left, %.3f before, %.3f s since", left, signal_left, elapsed);
	left = remaining(OWN_THREAD_CPU);
	expect(left <= own_cpu_left && left >= own_cpu_left - elapsed - slack,
	       "thread CPU one-shot: %.3f s left, %.3f before", left, own_cpu_left);
	struct itimerval it;
	if (virtual_fires) {
		getitimer(ITIMER_PROF, &it);
		expect(seconds_tv(it.it_value) <= seconds_tv(prof_was.it_value) &&
		       seconds_tv(it.it_value) >= seconds_tv(prof_was.it_value) - 2 * elapsed - slack &&
		       !it.it_interval.tv_sec && !it.it_interval.tv_usec,
		       "ITIMER_PROF one-shot: %.3f s left, %.3f before", seconds_tv(it.it_value),
		       seconds_tv(prof_was.it_value));
		getitimer(ITIMER_REAL, &it);
		expect(seconds_tv(it.it_value) <= seconds_tv(real_was.it_value) &&
		       seconds_tv(it.it_value) >= seconds_tv(real_was.it_value) - elapsed - slack,
		       "ITIMER_REAL one-shot: %.3f s left, %.3f before", seconds_tv(it.it_value),
		       seconds_tv(real_was.it_value));
		getitimer(ITIMER_VIRTUAL, &it);
	} else {
		getitimer(ITIMER_VIRTUAL, &it);
		expect(seconds_tv(it.it_value) <= seconds_tv(virtual_was.it_value) &&
		       seconds_tv(it.it_value) >= seconds_tv(virtual_was.it_value) - 2 * elapsed - slack,
		       "ITIMER_VIRTUAL one-shot: %.3f s left, %.3f before", seconds_tv(it.it_value),
		       seconds_tv(virtual_was.it_value));
		getitimer(ITIMER_PROF, &it);
	}
	expect(it.it_interval.tv_sec == 0 && it.it_interval.tv_usec == 10000,
	       "the periodic itimer's interval is %.6f s", seconds_tv(it.it_interval));
	for (int i = MONOTONIC; i <= BURNER_CPU; i++)
		expect(interval(i) == 0.01, "timer %d: interval %.6f s", i, interval(i));
	expect(interval(NONE_PERIODIC) == 0.05 && remaining(NONE_PERIODIC) <= 0.05 &&
	       remaining(NONE_PERIODIC) > 0, "SIGEV_NONE periodic: %.6f s every %.6f s",
	       remaining(NONE_PERIODIC), interval(NONE_PERIODIC));

	wait_for_ticks(virtual_fires);
	check_overrun_timer(check_began);

	/* the 2 s one-shot fires once, when its time comes */
	left = remaining(TWO_SECONDS);
	expect(left <= 2.0, "2 s one-shot: %.3f s left", left);
	double deadline = now() + left + 5;
	while (!ticks[TWO_SECONDS] && now() < deadline)
		sleep_for(0.01);
	sleep_for(0.05);
	expect(ticks[TWO_SECONDS] == 1 && remaining(TWO_SECONDS) == 0,
	       "2 s one-shot fired %d times, %.3f s left", ticks[TWO_SECONDS], remaining(TWO_SECONDS));
	expect(ticks[NEVER_ARMED] + ticks[DISARMED] == quiet_before &&
	       remaining(NEVER_ARMED) == 0 && remaining(DISARMED) == 0 &&
	       interval(NEVER_ARMED) == 0 && interval(DISARMED) == 0,
	       "a disarmed timer fired or is armed");

	/* the deleted ids stay free, and a new timer gets the next id */
	struct itimerspec its;
	static const int deleted[] = { GAP0, GAP2, LAST_DELETED };
	for (int i = 0; i < 3; i++)
		expect(timer_gettime(timers[deleted[i]], &its) == -1 && errno == EINVAL,
		       "deleted timer id %ld exists", (long)(intptr_t)timers[deleted[i]]);
	timer_t fresh;
	struct sigevent none = { .sigev_notify = SIGEV_NONE };
	expect(timer_create(CLOCK_MONOTONIC, &none, &fresh) == 0 && (intptr_t)fresh == next_id,
	       "timer_create gave id %ld, the kernel would have given %d", (long)(intptr_t)fresh,
	       next_id);
	return report();
}
