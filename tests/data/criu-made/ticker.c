/* A small process tree for CRIU 4.2 to dump and hiber to restore
 * (tests/test_criu_made.py; how the images were made: README.md here).
 *
 * The parent (a session leader, stdout an O_APPEND file) has:
 *   - a thread reading the child's heartbeats from a pipe, in order;
 *   - a child writing heartbeats (1, 2, 3, ...) to that pipe every 10 ms
 *     and counting them in a shared anonymous page;
 *   - private anonymous pages with a pattern (the child's copy diverges);
 *   - a message queued in a second pipe, never read before the dump;
 *   - a POSIX timer firing SIGALRM every 20 ms into a handler;
 *   - a SIGUSR1 handler: on SIGUSR1 it checks all of the above and writes
 *     "PASS" or "FAIL n" to stdout, then runs on.
 * Every 25 timer ticks it appends "tick T beats B" to stdout.
 * Self-contained on purpose: its binary must stay what the images recorded. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define PRIVATE_PAGES 3
#define CHILD_MEMORY_BAD (1ULL << 63)
#define QUEUED "queued in the pipe before the dump"

static volatile sig_atomic_t ticks, check_requested;
static unsigned char *private_pages;  /* MAP_PRIVATE | MAP_ANONYMOUS */
static volatile uint64_t *shared;     /* MAP_SHARED | MAP_ANONYMOUS: the child's beat count */
static char *heap_text;
static int beat_pipe[2], queued_pipe[2];
static timer_t timer;
static pid_t child, reader_tid;
static volatile uint64_t beats_seen, beat_errors, child_memory_bad;
static int failures;

static void on_tick(int sig) { (void)sig; ticks++; }
static void on_check(int sig) { (void)sig; check_requested = 1; }

static unsigned char pattern(size_t i) { return (unsigned char)(i * 7 + 3); }

/* The pattern, with the third page's head naming who owns this copy. */
static int private_pages_intact(const char *owner)
{
	for (size_t i = 0; i < PRIVATE_PAGES * PAGE; i++) {
		if (i >= 2 * PAGE && i < 2 * PAGE + 16)
			continue;
		if (private_pages[i] != pattern(i))
			return 0;
	}
	return !strcmp((char *)private_pages + 2 * PAGE, owner);
}

static void child_main(void)
{
	close(beat_pipe[0]);
	close(queued_pipe[0]);
	close(queued_pipe[1]);
	strcpy((char *)private_pages + 2 * PAGE, "child");
	for (uint64_t beat = 1;; beat++) {
		uint64_t word = beat | (private_pages_intact("child") ? 0 : CHILD_MEMORY_BAD);
		shared[0] = beat;
		if (write(beat_pipe[1], &word, sizeof(word)) != sizeof(word))
			_exit(1);
		usleep(10000);
	}
}

static void *reader_main(void *arg)
{
	uint64_t word;
	(void)arg;
	__atomic_store_n(&reader_tid, (pid_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
	while (read(beat_pipe[0], &word, sizeof(word)) == sizeof(word)) {
		if (word & CHILD_MEMORY_BAD)
			child_memory_bad++;
		if ((word & ~CHILD_MEMORY_BAD) != beats_seen + 1)
			beat_errors++;
		beats_seen = word & ~CHILD_MEMORY_BAD;
	}
	return NULL;
}

#define expect(cond, ...)                                   \
	do {                                                \
		if (!(cond)) {                              \
			printf("FAIL: ");                   \
			printf(__VA_ARGS__);                \
			printf("\n");                       \
			failures++;                         \
		}                                           \
	} while (0)

/* Sleep ms milliseconds, whatever signals come meanwhile. */
static void sleep_ms(long ms)
{
	struct timespec left = { ms / 1000, ms % 1000 * 1000000 };
	while (nanosleep(&left, &left))
		;
}

/* Wait up to 2 s for *value to grow by at least by. */
static int grows(volatile uint64_t *value, uint64_t by)
{
	uint64_t start = *value;
	for (int i = 0; i < 200 && *value < start + by; i++)
		sleep_ms(10);
	return *value >= start + by;
}

static void run_check(void)
{
	char buf[64] = { 0 };
	struct itimerspec its;
	struct sigaction sa;
	int status;

	failures = 0;
	expect(private_pages_intact("parent"), "the private pages changed");
	expect(!strcmp(heap_text, "on the heap"), "the heap holds '%.16s'", heap_text);
	/* the queued message is there; put it back for the next check */
	ssize_t n = read(queued_pipe[0], buf, sizeof(buf) - 1);
	expect(n == (ssize_t)strlen(QUEUED) && !strcmp(buf, QUEUED), "the pipe held '%s'", buf);
	if (n > 0 && write(queued_pipe[1], buf, n) != n)
		expect(0, "cannot queue the message again");
	expect(waitpid(child, &status, WNOHANG) == 0, "the child %d is gone", child);
	expect(syscall(SYS_tgkill, getpid(), reader_tid, 0) == 0, "the reader thread is gone");
	expect(grows(shared, 5), "the child's count in shared memory stays at %llu",
	       (unsigned long long)shared[0]);
	expect(grows(&beats_seen, 5), "the reader thread saw no beat after %llu",
	       (unsigned long long)beats_seen);
	expect(!beat_errors, "%llu beats lost or repeated", (unsigned long long)beat_errors);
	expect(!child_memory_bad, "the child's private pages changed");
	uint64_t before = ticks;
	sleep_ms(200);
	expect(ticks >= before + 3, "the timer fired %llu times in 200 ms",
	       (unsigned long long)(ticks - before));
	expect(timer_gettime(timer, &its) == 0 && its.it_interval.tv_nsec == 20000000,
	       "timer %ld is not the 20 ms one", (long)(intptr_t)timer);
	sigaction(SIGALRM, NULL, &sa);
	expect(sa.sa_handler == on_tick, "the SIGALRM handler is lost");
	printf(failures ? "FAIL %d\n" : "PASS\n", failures);
}

int main(void)
{
	struct sigaction sa = { .sa_handler = on_tick, .sa_flags = SA_RESTART };
	struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGALRM };
	struct itimerspec its = { { 0, 20000000 }, { 0, 20000000 } };
	pthread_t reader;
	uint64_t logged = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	private_pages = mmap(NULL, PRIVATE_PAGES * PAGE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	shared = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	for (size_t i = 0; i < PRIVATE_PAGES * PAGE; i++)
		private_pages[i] = pattern(i);
	heap_text = strdup("on the heap");
	if (pipe(beat_pipe) || pipe2(queued_pipe, O_NONBLOCK))
		return 1;
	if (write(queued_pipe[1], QUEUED, strlen(QUEUED)) != (ssize_t)strlen(QUEUED))
		return 1;

	child = fork();
	if (child == 0)
		child_main();
	close(beat_pipe[1]);
	strcpy((char *)private_pages + 2 * PAGE, "parent");
	/* the thread takes no signal: SIGALRM and SIGUSR1 wake main's pause() */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pthread_create(&reader, NULL, reader_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	while (!__atomic_load_n(&reader_tid, __ATOMIC_SEQ_CST))
		usleep(1000);

	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	sa.sa_handler = on_check;
	sigaction(SIGUSR1, &sa, NULL);
	timer_create(CLOCK_MONOTONIC, &sev, &timer);
	timer_settime(timer, 0, &its, NULL);
	printf("READY pid=%d child=%d reader=%d timer=%ld\n", getpid(), child, reader_tid,
	       (long)(intptr_t)timer);

	for (;;) {
		pause();
		if (ticks >= logged + 25) {
			logged = ticks;
			printf("tick %llu beats %llu\n", (unsigned long long)logged,
			       (unsigned long long)beats_seen);
		}
		if (check_requested) {
			check_requested = 0;
			run_check();
		}
	}
}
