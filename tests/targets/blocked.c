/* Threads blocked in read(), nanosleep(), pause() and a futex wait while the
 * process is dumped; each must resume correctly after restore: the read gets
 * its data, the sleep lasts its full time (an interrupted relative sleep is
 * resumed with the remaining time), pause returns to a signal, the futex wait
 * to a wake. The main thread also waits in pause(). */
#include "harness.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>

static int data_pipe[2];
static char read_got[16];
static int slept_ms;
static volatile int pause_woke;
static uint32_t futex_word;
static volatile int futex_woke;
static pid_t tids[4];

static long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void *reader(void *arg)
{
	tids[0] = gettid();
	ssize_t n = read(data_pipe[0], read_got, sizeof(read_got) - 1);
	if (n > 0)
		read_got[n] = 0;
	return arg;
}

static void *sleeper(void *arg)
{
	tids[1] = gettid();
	long start = now_ms();
	struct timespec req = { 2, 0 }, rem;
	while (nanosleep(&req, &rem) == -1 && errno == EINTR)
		req = rem;
	slept_ms = (int)(now_ms() - start);
	return arg;
}

static void on_usr1(int sig) { (void)sig; }

static void *pauser(void *arg)
{
	tids[2] = gettid();
	pause();
	pause_woke = 1;
	return arg;
}

static void *futex_waiter(void *arg)
{
	tids[3] = gettid();
	while (__atomic_load_n(&futex_word, __ATOMIC_SEQ_CST) == 0)
		syscall(SYS_futex, &futex_word, FUTEX_WAIT, 0, NULL, NULL, 0);
	futex_woke = 1;
	return arg;
}

int main(void)
{
	pthread_t threads[4];
	void *(*fns[4])(void *) = { reader, sleeper, pauser, futex_waiter };
	harness_init();
	signal(SIGUSR1, on_usr1);
	pipe(data_pipe);
	block_check_signal(1);
	for (int i = 0; i < 4; i++)
		pthread_create(&threads[i], NULL, fns[i], NULL);
	block_check_signal(0);
	/* every thread has said who it is (a loaded machine may take a while
	 * to run them), then a moment for all four to enter their syscalls */
	for (int i = 0; i < 4; i++)
		while (!__atomic_load_n(&tids[i], __ATOMIC_SEQ_CST))
			usleep(1000);
	usleep(100000);
	ready("reader=%d sleeper=%d pauser=%d futex=%d", tids[0], tids[1], tids[2], tids[3]);
	wait_for_check();

	write(data_pipe[1], "data", 4);
	pthread_kill(threads[2], SIGUSR1);
	__atomic_store_n(&futex_word, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &futex_word, FUTEX_WAKE, 1, NULL, NULL, 0);
	for (int i = 0; i < 4; i++)
		pthread_join(threads[i], NULL);
	expect(!strcmp(read_got, "data"), "read got '%s'", read_got);
	expect(slept_ms >= 1900, "slept only %d ms of 2000", slept_ms);
	expect(pause_woke, "pause never returned");
	expect(futex_woke, "futex wait never returned");
	return report();
}
