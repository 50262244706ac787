/* A process with most kinds of state a dump must capture; after the test's
 * check signal it verifies all of it is still as it set it up.
 * Usage: state WORKDIR [nothread]
 *   files, FIFO and cwd are made inside WORKDIR; with "nothread" the process
 *   stays single-threaded (no reader thread blocked in read()). */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

#define PAGE 4096
#define ANON_PAGES 1024 /* 4 MiB */
#define MADV_GUARD_INSTALL 102

static unsigned char pattern(size_t i, int salt)
{
	return (unsigned char)(i * 31 + salt);
}

static void fill(unsigned char *p, size_t n, int salt)
{
	for (size_t i = 0; i < n; i++)
		p[i] = pattern(i, salt);
}

static int same(const unsigned char *p, size_t n, int salt)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != pattern(i, salt))
			return 0;
	return 1;
}

/* 4 KiB of stack per level: 256 levels grow the stack by 1 MiB */
static int depth_sum(int depth)
{
	volatile char frame[4096];
	frame[0] = 1;
	return depth ? frame[0] + depth_sum(depth - 1) : 0;
}

static void on_usr1(int sig) { (void)sig; }
static void on_alarm(int sig) { (void)sig; }
static volatile int timer_hits;
static void on_timer(int sig) { (void)sig; timer_hits++; }

static int reader_pipe[2];
static char reader_got[32];

static void *reader(void *arg)
{
	(void)arg;
	/* blocked in read() while the process is dumped */
	ssize_t n = read(reader_pipe[0], reader_got, sizeof(reader_got) - 1);
	if (n > 0)
		reader_got[n] = 0;
	return NULL;
}

static int perms_of(void *addr, char *out)
{
	char line[512];
	FILE *f = fopen("/proc/self/maps", "r");
	unsigned long a = (unsigned long)addr;
	int found = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		char perms[5];
		if (sscanf(line, "%lx-%lx %4s", &s, &e, perms) == 3 && s <= a && a < e) {
			memcpy(out, perms, 5);
			found = 1;
		}
	}
	fclose(f);
	return found;
}

int main(int argc, char **argv)
{
	char path[4096];
	harness_init();
	if (argc < 2 || chdir(argv[1]))
		return 2;

	/* memory of every kind */
	unsigned char *anon = mmap(NULL, ANON_PAGES * PAGE, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fill(anon, ANON_PAGES * PAGE, 7);
	madvise(anon + 5 * PAGE, PAGE, MADV_GUARD_INSTALL);
	unsigned char *none = mmap(NULL, 3 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *huge = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	madvise(huge, 4 << 20, MADV_HUGEPAGE);
	madvise(huge, 4 << 20, MADV_DONTDUMP);
	fill(huge, PAGE, 13);
	unsigned char *ro = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fill(ro, 2 * PAGE, 11);
	mprotect(ro, 2 * PAGE, PROT_READ);

	int dataf = open("data.bin", O_RDWR | O_CREAT | O_TRUNC, 0644);
	unsigned char block[4 * PAGE];
	fill(block, sizeof(block), 3);
	write(dataf, block, sizeof(block));
	unsigned char *fpriv = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, dataf, 0);
	fpriv[PAGE + 1] = 0xAB; /* one COWed page */
	unsigned char *fshared = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, dataf,
				      2 * PAGE);
	fshared[0] = 0xCD;

	unsigned char *shanon = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	fill(shanon, 2 * PAGE, 5);
	int memfd = memfd_create("state-memfd", 0);
	ftruncate(memfd, 2 * PAGE);
	unsigned char *mfd = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	fill(mfd, PAGE, 9);

	/* files */
	int pos_fd = open("pos.txt", O_RDWR | O_CREAT | O_TRUNC, 0600);
	write(pos_fd, "0123456789", 10);
	lseek(pos_fd, 5, SEEK_SET);
	int append_fd = open("append.log", O_WRONLY | O_CREAT | O_APPEND, 0600);
	write(append_fd, "line\n", 5);
	int null_fd = open("/dev/null", O_RDONLY);
	int pipefd[2];
	pipe(pipefd);
	write(pipefd[1], "pipe-data", 9);
	mkfifo("fifo", 0600);
	int fifo_r = open("fifo", O_RDONLY | O_NONBLOCK);
	int fifo_w = open("fifo", O_WRONLY);
	write(fifo_w, "fifo-data", 9);
	mkdir("sub", 0755);
	chdir("sub");
	umask(027);
	struct rlimit rl = { 512, 1024 };
	setrlimit(RLIMIT_NOFILE, &rl);

	/* signals */
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGINT);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGALRM, on_alarm);
	sigset_t blocked;
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGUSR2);
	sigaddset(&blocked, SIGRTMIN + 5);
	sigaddset(&blocked, SIGTRAP);
	sigprocmask(SIG_BLOCK, &blocked, NULL);
	raise(SIGUSR2);                                   /* private queue */
	kill(getpid(), SIGTRAP); /* a tracer's own signal, pending: CRIU 4.2 refuses this */
	union sigval v = { .sival_int = 42 };
	sigqueue(getpid(), SIGRTMIN + 5, v);              /* shared queue */
	static char altstack[65536]; /* SIGSTKSZ is not a constant in glibc >= 2.34 */
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
	sigaltstack(&ss, NULL);

	/* timers */
	struct itimerval it = { { 100, 0 }, { 100, 0 } };
	setitimer(ITIMER_REAL, &it, NULL);
	signal(SIGRTMIN + 3, on_timer);
	struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN + 3 };
	timer_t timer;
	timer_create(CLOCK_MONOTONIC, &sev, &timer);
	struct itimerspec its = { { 50, 0 }, { 50, 0 } };
	timer_settime(timer, 0, &its, NULL);

	/* a second thread, blocked in read() */
	int threaded = !(argc > 2 && !strcmp(argv[2], "nothread"));
	pthread_t thread;
	pipe(reader_pipe);
	if (threaded) {
		block_check_signal(1);
		pthread_create(&thread, NULL, reader, NULL);
		block_check_signal(0);
		usleep(20000);
	}

	struct timespec mono_before;
	clock_gettime(CLOCK_MONOTONIC, &mono_before);
	pid_t pid_before = getpid();
	ready("anon=%p none=%p ro=%p fpriv=%p fshared=%p shanon=%p memfd=%p "
	      "pos_fd=%d append_fd=%d null_fd=%d pipe_r=%d fifo_r=%d",
	      anon, none, ro, fpriv, fshared, shanon, mfd, pos_fd, append_fd, null_fd,
	      pipefd[0], fifo_r);
	wait_for_check();

	/* memory */
	expect(same(anon, 5 * PAGE, 7), "anonymous memory changed");
	expect(same(anon + 6 * PAGE, (ANON_PAGES - 6) * PAGE, 7), "anonymous memory changed");
	expect(same(ro, 2 * PAGE, 11), "read-only memory changed");
	expect(fpriv[PAGE + 1] == 0xAB && fpriv[0] == pattern(0, 3), "private file mapping");
	expect(fshared[0] == 0xCD, "shared file mapping");
	expect(same(shanon, 2 * PAGE, 5), "shared anonymous memory changed");
	expect(same(mfd, PAGE, 9), "memfd mapping changed");
	char perms[5] = "";
	expect(perms_of(none, perms) && !strcmp(perms, "---p"), "PROT_NONE area is %s", perms);
	expect(perms_of(ro, perms) && !strcmp(perms, "r--p"), "read-only area is %s", perms);
	expect(same(huge, PAGE, 13), "huge-page area changed");
	expect(vmflag_of(huge, "hg") && vmflag_of(huge, "dd"), "madvise flags lost");

	/* the heap and the stack still grow */
	char *top = sbrk(0);
	expect(sbrk(8 << 20) == top, "heap does not grow");
	memset(top, 1, 8 << 20);
	expect(depth_sum(256) == 256, "deep recursion");
	void *blocks[1000];
	for (int i = 0; i < 1000; i++)
		blocks[i] = malloc(1000 + i);
	for (int i = 0; i < 1000; i++)
		free(blocks[i]);

	/* the vdso answers, with sane values */
	struct timespec mono, real;
	struct timeval tv;
	expect(clock_gettime(CLOCK_MONOTONIC, &mono) == 0 && mono.tv_sec >= mono_before.tv_sec,
	       "clock_gettime(CLOCK_MONOTONIC) went back");
	expect(clock_gettime(CLOCK_REALTIME, &real) == 0 && real.tv_sec > 1700000000,
	       "clock_gettime(CLOCK_REALTIME)");
	expect(gettimeofday(&tv, NULL) == 0 && tv.tv_sec > 1700000000, "gettimeofday");
	expect(time(NULL) > 1700000000, "time");
	expect(sched_getcpu() >= 0, "getcpu");

	/* the same process, its own session and group */
	expect(getpid() == pid_before, "pid changed");
	expect(getsid(0) == getpid() && getpgrp() == getpid(), "session %d group %d",
	       getsid(0), getpgrp());

	/* files */
	expect(lseek(pos_fd, 0, SEEK_CUR) == 5, "file position");
	expect(fcntl(append_fd, F_GETFL) & O_APPEND, "O_APPEND lost");
	char buf[64] = "";
	expect(read(pipefd[0], buf, sizeof(buf)) == 9 && !memcmp(buf, "pipe-data", 9),
	       "pipe data: %s", buf);
	memset(buf, 0, sizeof(buf));
	expect(read(fifo_r, buf, sizeof(buf)) == 9 && !memcmp(buf, "fifo-data", 9),
	       "fifo data: %s", buf);
	expect(getcwd(path, sizeof(path)) && strstr(path, "/sub"), "cwd is %s", path);
	mode_t old = umask(0);
	expect(old == 027, "umask is %o", old);
	getrlimit(RLIMIT_NOFILE, &rl);
	expect(rl.rlim_cur == 512 && rl.rlim_max == 1024, "RLIMIT_NOFILE %ld/%ld",
	       (long)rl.rlim_cur, (long)rl.rlim_max);

	/* signals */
	struct sigaction now;
	sigaction(SIGUSR1, NULL, &now);
	expect(now.sa_handler == on_usr1 && (now.sa_flags & SA_RESTART) &&
	       sigismember(&now.sa_mask, SIGINT), "SIGUSR1 action");
	sigset_t mask, pending;
	sigprocmask(SIG_BLOCK, NULL, &mask);
	expect(sigismember(&mask, SIGUSR2) && sigismember(&mask, SIGRTMIN + 5), "signal mask");
	sigpending(&pending);
	expect(sigismember(&pending, SIGUSR2), "SIGUSR2 no longer pending");
	expect(sigismember(&pending, SIGRTMIN + 5), "SIGRTMIN+5 no longer pending");
	siginfo_t si;
	struct timespec zero = { 0, 0 };
	sigset_t trap;
	sigemptyset(&trap);
	sigaddset(&trap, SIGTRAP);
	expect(sigtimedwait(&trap, &si, &zero) == SIGTRAP && si.si_code == SI_USER &&
	       si.si_pid == getpid(), "pending SIGTRAP lost or changed");
	sigset_t rt;
	sigemptyset(&rt);
	sigaddset(&rt, SIGRTMIN + 5);
	expect(sigtimedwait(&rt, &si, &zero) == SIGRTMIN + 5 && si.si_value.sival_int == 42,
	       "queued signal value");
	stack_t cur;
	sigaltstack(NULL, &cur);
	expect(cur.ss_sp == altstack && cur.ss_size == sizeof(altstack), "sigaltstack");

	/* timers */
	getitimer(ITIMER_REAL, &it);
	expect(it.it_interval.tv_sec == 100 && it.it_value.tv_sec > 0, "itimer");
	timer_gettime(timer, &its);
	expect(its.it_interval.tv_sec == 50 && its.it_value.tv_sec > 0, "posix timer");

	/* the thread blocked in read() */
	if (threaded) {
		write(reader_pipe[1], "wake", 4);
		pthread_join(thread, NULL);
		expect(!strcmp(reader_got, "wake"), "reader thread got '%s'", reader_got);
	}
	return report();
}
