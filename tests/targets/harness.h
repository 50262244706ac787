/* A test target's side of the protocol with the tests:
 *   1. set up some state, then ready("key=value ...") prints "READY ..." on stdout;
 *   2. wait_for_check() returns when the test sends CHECK_SIGNAL (SIGRTMIN+1);
 *   3. expect(...) records failures; report() prints PASS or FAIL lines, exits.
 * Between 1 and 2 the test checkpoints (and later restores) the process. */
#ifndef HIBER_TEST_HARNESS_H
#define HIBER_TEST_HARNESS_H

#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK_SIGNAL (SIGRTMIN + 1)

static volatile sig_atomic_t check_requested;
static int failures;

static void on_check_signal(int sig)
{
	(void)sig;
	check_requested = 1;
}

static void harness_init(void)
{
	struct sigaction sa = { .sa_handler = on_check_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(CHECK_SIGNAL, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
}

static __attribute__((unused)) void ready(const char *fmt, ...)
{
	va_list ap;
	printf("READY pid=%d ", getpid());
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* Only the main thread may take the check signal: call around creating
 * threads, which inherit the blocked mask. */
static __attribute__((unused)) void block_check_signal(int block)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, CHECK_SIGNAL);
	pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

/* Whether the mapping holding addr has the VmFlags flag ("lo", "hg") in smaps. */
static __attribute__((unused)) int vmflag_of(const void *addr, const char *flag)
{
	char line[512];
	FILE *f = fopen("/proc/self/smaps", "r");
	unsigned long a = (unsigned long)addr;
	int inside = 0, found = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' '))
			inside = s <= a && a < e;
		else if (inside && !strncmp(line, "VmFlags:", 8)) {
			char word[8];
			snprintf(word, sizeof(word), " %s", flag);
			found = strstr(line, word) != NULL;
		}
	}
	fclose(f);
	return found;
}

/* Start fn(arg) in a thread that never takes the check signal, and return
 * it once it has stored its TID in *tid (fn does that first). */
static __attribute__((unused)) pthread_t start_thread(void *(*fn)(void *), void *arg,
						      pid_t *tid)
{
	pthread_t thread;
	block_check_signal(1);
	pthread_create(&thread, NULL, fn, arg);
	block_check_signal(0);
	while (!__atomic_load_n(tid, __ATOMIC_SEQ_CST))
		usleep(1000);
	return thread;
}

/* Sleep in pause() until the test asks for the check: the process sits in
 * a restartable syscall when it is dumped. */
static __attribute__((unused)) void wait_for_check(void)
{
	while (!check_requested)
		pause();
}

#define expect(cond, ...)                                   \
	do {                                                \
		if (!(cond)) {                              \
			printf("FAIL %s:%d: ", __FILE__, __LINE__); \
			printf(__VA_ARGS__);                \
			printf("\n");                       \
			failures++;                         \
		}                                           \
	} while (0)

static int report(void)
{
	printf(failures ? "FAILED %d\n" : "PASS\n", failures);
	fflush(stdout);
	return failures ? 1 : 0;
}

#endif
