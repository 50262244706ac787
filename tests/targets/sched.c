/* Scheduling and CPUs per thread; after restore main checks each thread's
 * policy, priority, nice and affinity, all as they were set up:
 *   main  SCHED_BATCH, nice 5, CPU LAST only
 *   idle  SCHED_IDLE, nice 7, CPU 0 only
 *   rr    SCHED_RR priority 3 with SCHED_RESET_ON_FORK, nice -3
 *   fifo  SCHED_FIFO priority 10, every CPU
 * LAST is the highest CPU online (0 on a one-CPU machine).
 * Usage: sched [deadline]: with "deadline", main runs under SCHED_DEADLINE
 * instead (which the dump must refuse). */
#include "harness.h"

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#ifndef SCHED_RESET_ON_FORK
#define SCHED_RESET_ON_FORK 0x40000000
#endif
#define SCHED_DEADLINE 6

enum { MAIN, IDLE, RR, FIFO, N };
static const int policy[N] = { SCHED_BATCH, SCHED_IDLE, SCHED_RR | SCHED_RESET_ON_FORK,
			       SCHED_FIFO };
static const int prio[N] = { 0, 0, 3, 10 };
static const int nice_of[N] = { 5, 7, -3, 0 };
static pid_t tids[N];
static int park[2];
static int last_cpu;

static int cpus_of(int i, cpu_set_t *set)
{
	CPU_ZERO(set);
	if (i == MAIN)
		CPU_SET(last_cpu, set);
	else if (i == IDLE)
		CPU_SET(0, set);
	else
		return 0;
	return 1;
}

static void *thread_main(void *arg)
{
	int i = (int)(intptr_t)arg;
	tids[i] = gettid();
	char c;
	read(park[0], &c, 1);
	return NULL;
}

static int setup(int i)
{
	struct sched_param p = { prio[i] };
	cpu_set_t set;
	if (setpriority(PRIO_PROCESS, tids[i], nice_of[i]))
		return -1;
	if (sched_setscheduler(tids[i], policy[i], &p))
		return -1;
	if (cpus_of(i, &set) && sched_setaffinity(tids[i], sizeof(set), &set))
		return -1;
	return 0;
}

struct sched_attr {
	uint32_t size, sched_policy;
	uint64_t sched_flags;
	int32_t sched_nice;
	uint32_t sched_priority;
	uint64_t sched_runtime, sched_deadline, sched_period;
};

int main(int argc, char **argv)
{
	harness_init();
	last_cpu = sysconf(_SC_NPROCESSORS_ONLN) - 1;
	if (argc > 1 && !strcmp(argv[1], "deadline")) {
		struct sched_attr a = { sizeof(a), SCHED_DEADLINE, 0, 0, 0,
					1000000, 10000000, 10000000 };
		if (syscall(SYS_sched_setattr, 0, &a, 0)) {
			perror("sched_setattr");
			return 2;
		}
		ready("deadline=1");
		wait_for_check();
		return report();
	}
	pipe(park);
	tids[MAIN] = gettid();
	pthread_t t[N];
	block_check_signal(1);
	for (int i = 1; i < N; i++)
		pthread_create(&t[i], NULL, thread_main, (void *)(intptr_t)i);
	block_check_signal(0);
	for (int i = 1; i < N; i++)
		while (!__atomic_load_n(&tids[i], __ATOMIC_SEQ_CST))
			usleep(1000);
	for (int i = 0; i < N; i++)
		if (setup(i)) {
			perror("setup");
			return 2;
		}
	ready("idle=%d rr=%d fifo=%d last_cpu=%d", tids[IDLE], tids[RR], tids[FIFO], last_cpu);
	wait_for_check();

	for (int i = 0; i < N; i++) {
		struct sched_param p;
		cpu_set_t want, got;
		int pol = sched_getscheduler(tids[i]);
		expect(pol == policy[i], "thread %d: policy 0x%x, not 0x%x", i, pol, policy[i]);
		sched_getparam(tids[i], &p);
		expect(p.sched_priority == prio[i], "thread %d: priority %d", i, p.sched_priority);
		errno = 0;
		int n = getpriority(PRIO_PROCESS, tids[i]);
		expect(n == nice_of[i], "thread %d: nice %d, not %d", i, n, nice_of[i]);
		sched_getaffinity(tids[i], sizeof(got), &got);
		if (!cpus_of(i, &want)) {
			CPU_ZERO(&want);
			for (int c = 0; c <= last_cpu; c++)
				CPU_SET(c, &want);
		}
		expect(CPU_EQUAL(&want, &got), "thread %d: %d CPUs, not %d", i, CPU_COUNT(&got),
		       CPU_COUNT(&want));
	}
	write(park[1], "xxx", 3);
	for (int i = 1; i < N; i++)
		pthread_join(t[i], NULL);
	return report();
}
