/* Eight threads in different states: two spinning on a shared mutex, one
 * spinning alone, one in a futex wait, one in a condition wait, one in a
 * nanosleep loop, one in read() on a pipe, one in sigwait(). After the check
 * signal each one is woken, checks that it still has its TID and that its
 * own counter went on, and the main thread joins them all. */
#include "harness.h"

#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>

#define N 8
enum { SPIN, LOCK1, LOCK2, FUTEX, COND, SLEEP, READ, SIGWAIT };

static pid_t tids[N];
static volatile unsigned long counters[N];
static volatile int stop;
static int ok[N];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t cond_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int cond_flag;
static uint32_t futex_word;
static int wake_pipe[2];
static volatile unsigned long shared_total;

static void *thread_main(void *arg)
{
	int i = (int)(intptr_t)arg;
	tids[i] = gettid();
	switch (i) {
	case SPIN:
		while (!stop)
			counters[i]++;
		break;
	case LOCK1:
	case LOCK2:
		while (!stop) {
			pthread_mutex_lock(&lock);
			shared_total++;
			counters[i]++;
			pthread_mutex_unlock(&lock);
		}
		break;
	case FUTEX:
		while (__atomic_load_n(&futex_word, __ATOMIC_SEQ_CST) == 0)
			syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
		counters[i]++;
		break;
	case COND:
		pthread_mutex_lock(&cond_lock);
		while (!cond_flag)
			pthread_cond_wait(&cond, &cond_lock);
		pthread_mutex_unlock(&cond_lock);
		counters[i]++;
		break;
	case SLEEP:
		while (!stop) {
			struct timespec t = { 0, 10000000 };
			nanosleep(&t, NULL);
			counters[i]++;
		}
		break;
	case READ: {
		char c;
		if (read(wake_pipe[0], &c, 1) == 1)
			counters[i]++;
		break;
	}
	case SIGWAIT: {
		sigset_t set;
		int sig;
		sigemptyset(&set);
		sigaddset(&set, SIGUSR2);
		if (sigwait(&set, &sig) == 0 && sig == SIGUSR2)
			counters[i]++;
		break;
	}
	}
	ok[i] = gettid() == tids[i];
	return NULL;
}

int main(void)
{
	pthread_t threads[N];
	unsigned long seen[N];
	harness_init();
	pipe(wake_pipe);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, CHECK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited: only sigwait takes SIGUSR2 */
	for (int i = 0; i < N; i++)
		pthread_create(&threads[i], NULL, thread_main, (void *)(intptr_t)i);
	sigemptyset(&set);
	sigaddset(&set, CHECK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	usleep(100000);
	printf("READY pid=%d", getpid());
	for (int i = 0; i < N; i++)
		printf(" t%d=%d", i, tids[i]);
	printf("\n");
	fflush(stdout);
	wait_for_check();

	for (int i = 0; i < N; i++)
		seen[i] = counters[i];
	usleep(100000); /* the busy ones go on counting */
	stop = 1;
	__atomic_store_n(&futex_word, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	pthread_mutex_lock(&cond_lock);
	cond_flag = 1;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&cond_lock);
	write(wake_pipe[1], "w", 1);
	pthread_kill(threads[SIGWAIT], SIGUSR2);
	for (int i = 0; i < N; i++)
		pthread_join(threads[i], NULL);
	for (int i = 0; i < N; i++) {
		expect(ok[i], "thread %d changed TID", i);
		expect(counters[i] > seen[i], "thread %d did not go on (%lu)", i, counters[i]);
	}
	expect(shared_total == counters[LOCK1] + counters[LOCK2], "mutex-protected total");
	return report();
}
