/* An itimer and two POSIX timers that fire every 10 ms, one of them at a
 * thread of its own (SIGEV_THREAD_ID); after the check signal all must
 * still be firing, the last at that thread. */
#include "harness.h"

#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

static volatile int alarms, timer_ticks, thread_ticks, elsewhere;
static pid_t worker_tid;
static void on_alarm(int sig) { (void)sig; alarms++; }
static void on_timer(int sig) { (void)sig; timer_ticks++; }
static void on_thread_timer(int sig)
{
	(void)sig;
	if (syscall(SYS_gettid) == worker_tid)
		thread_ticks++;
	else
		elsewhere++;
}

static void *worker(void *arg)
{
	(void)arg;
	__atomic_store_n(&worker_tid, (pid_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
	for (;;)
		pause();
	return NULL;
}

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
	signal(SIGRTMIN + 3, on_thread_timer);
	start_thread(worker, NULL, &worker_tid);
	struct sigevent to_thread = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGRTMIN + 3 };
	to_thread._sigev_un._tid = worker_tid;
	timer_t thread_timer;
	timer_create(CLOCK_MONOTONIC, &to_thread, &thread_timer);
	timer_settime(thread_timer, 0, &its, NULL);
	ready("timer=%ld", (long)(intptr_t)timer);
	wait_for_check();
	int a = alarms, t = timer_ticks, w = thread_ticks;
	struct timespec pause_for = { 0, 200000000 }, rem;
	while (nanosleep(&pause_for, &rem))
		pause_for = rem;
	expect(alarms - a >= 5, "itimer fired %d times in 200 ms", alarms - a);
	expect(timer_ticks - t >= 5, "posix timer fired %d times in 200 ms", timer_ticks - t);
	expect(thread_ticks - w >= 5, "thread's timer fired %d times in 200 ms", thread_ticks - w);
	expect(!elsewhere, "the thread's timer signalled another thread %d times", elsewhere);
	timer_t again;
	expect(timer_create(CLOCK_MONOTONIC, &sev, &again) == 0, "timer_create");
	return report();
}
