/* The target of the kill-safety tests: a process (and children forked from
 * it) whose threads keep checking, all the time, that nothing was done to
 * them, so that hiber can be killed at any instant of a dump and the
 * verdict read at once, without restarting the target.
 *
 * Workers, each checking itself after every round:
 *   SPIN    a user-space loop holding ymm0-15 and r12-r15 (FPU/AVX state)
 *   SLEEP   the same registers held across raw nanosleep() syscalls
 *           (a syscall that restarts through the restart block)
 *   READ    blocked in read() on a pipe (restarts with ERESTARTSYS)
 *   FUTEX   blocked in a futex wait without timeout
 *   SIGNALS a signal handler run every 2 ms by a POSIX timer on a
 *           sigaltstack, a non-default mask and a CPU affinity of its own
 *   SUM     the checksum of MIB MiB of memory, over and over
 * and every worker checks its signal mask and CPU affinity. The main thread
 * feeds READ and FUTEX and watches that every worker makes progress. The
 * busy workers (SPIN, SIGNALS, SUM) run SCHED_IDLE: they are in user space
 * whenever hiber comes, yet never slow hiber (or anything else) down.
 *
 * The verdict is a struct status the tests read from /proc/PID/mem (its
 * address is in the READY line): no signal or syscall is needed to ask, so
 * the same target also serves under a seccomp filter that forbids
 * rt_sigreturn (and so any signal handler).
 *
 * Filters, each killing the process on any syscall it does not list:
 *   filter       lists what the process itself does after it is set up
 *   sandbox      and also what a dump runs inside it: a hiber killed at any
 *                instant leaves the process nothing its filter forbids
 *   nosigreturn  as filter, without rt_sigreturn (so no signal handler)
 *
 * usage: unharmed MIB CHILDREN none|filter|sandbox|nosigreturn */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { SPIN, SLEEP, READ, FUTEX, SIGNALS, SUM, WORKERS };

struct status {
	volatile uint64_t failures;
	volatile uint64_t rounds;   /* rounds of the main thread */
	volatile uint64_t sums;     /* memory checksums verified */
	volatile uint64_t handled;  /* signals handled on the sigaltstack */
	volatile uint64_t progress[WORKERS - 1];  /* SUM counts in sums */
};
static struct status st __attribute__((aligned(64)));

static uint64_t *memory;
static size_t words;
static uint64_t memory_sum;
static int with_signals;
static int started;
static int feed_pipe[2];
static uint32_t futex_word;
static cpu_set_t all_cpus, signals_cpus;
static sigset_t main_mask, worker_mask, signals_mask;
static char *altstack;
#define ALTSTACK_SIZE (64 * 1024)

static void fail(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n = snprintf(line, sizeof(line), "FAIL %d: ", getpid());
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	line[n++] = '\n';
	__atomic_add_fetch(&st.failures, 1, __ATOMIC_SEQ_CST);
	if (write(1, line, n) < 0)
		return;
}

static void check_mask_and_affinity(const char *who, const sigset_t *mask, const cpu_set_t *cpus)
{
	sigset_t now;
	cpu_set_t on;
	pthread_sigmask(SIG_SETMASK, NULL, &now);
	for (int sig = 1; sig < 65; sig++)
		if (sigismember(&now, sig) != sigismember(mask, sig)) {
			fail("%s: signal %d %sblocked", who, sig, sigismember(&now, sig) ? "" : "un");
			break;
		}
	if (sched_getaffinity(0, sizeof(on), &on) || !CPU_EQUAL(&on, cpus))
		fail("%s: CPU affinity changed", who);
}

/* ---- registers held across a loop or a syscall ------------------------ */

struct regs_in {
	uint8_t ymm[16][32] __attribute__((aligned(64)));
	uint64_t gp[4];
};

#define LOAD_YMM(n) "vmovdqu " #n "*32(%[in]), %%ymm" #n "\n"
#define STORE_YMM(n) "vmovdqu %%ymm" #n ", " #n "*32(%[out])\n"
#define LOAD_ALL LOAD_YMM(0) LOAD_YMM(1) LOAD_YMM(2) LOAD_YMM(3) LOAD_YMM(4) LOAD_YMM(5) \
	LOAD_YMM(6) LOAD_YMM(7) LOAD_YMM(8) LOAD_YMM(9) LOAD_YMM(10) LOAD_YMM(11)          \
	LOAD_YMM(12) LOAD_YMM(13) LOAD_YMM(14) LOAD_YMM(15)                                \
	"mov 512(%[in]), %%r12\n mov 520(%[in]), %%r13\n"                                  \
	"mov 528(%[in]), %%r14\n mov 536(%[in]), %%r15\n"
#define STORE_ALL STORE_YMM(0) STORE_YMM(1) STORE_YMM(2) STORE_YMM(3) STORE_YMM(4)        \
	STORE_YMM(5) STORE_YMM(6) STORE_YMM(7) STORE_YMM(8) STORE_YMM(9) STORE_YMM(10)     \
	STORE_YMM(11) STORE_YMM(12) STORE_YMM(13) STORE_YMM(14) STORE_YMM(15)             \
	"mov %%r12, 512(%[out])\n mov %%r13, 520(%[out])\n"                                \
	"mov %%r14, 528(%[out])\n mov %%r15, 536(%[out])\n"
#define CLOBBERS "rax", "rcx", "rdx", "rsi", "rdi", "r11", "r12", "r13", "r14", "r15",    \
	"memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",   \
	"xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

static void fill(struct regs_in *r, int seed)
{
	for (int i = 0; i < 16; i++)
		for (int j = 0; j < 32; j++)
			r->ymm[i][j] = (uint8_t)(seed * 131 + i * 37 + j * 11 + 1);
	for (int i = 0; i < 4; i++)
		r->gp[i] = 0x0101010101010101ULL * (uint64_t)(seed * 4 + i + 1);
}

static void spin_round(struct regs_in *in, struct regs_in *out)
{
	__asm__ volatile(LOAD_ALL
			 "mov $50000, %%ecx\n"
			 "1: dec %%ecx\n jnz 1b\n"
			 STORE_ALL
			 : : [in] "r"(in), [out] "r"(out) : CLOBBERS);
}

static void sleep_round(struct regs_in *in, struct regs_in *out)
{
	static const struct timespec ms = { 0, 1000000 };
	__asm__ volatile(LOAD_ALL
			 "mov $35, %%eax\n mov %[req], %%rdi\n xor %%esi, %%esi\n syscall\n"
			 STORE_ALL
			 : : [in] "r"(in), [out] "r"(out), [req] "r"(&ms) : CLOBBERS);
}

static void compare(const char *who, const struct regs_in *in, const struct regs_in *out)
{
	if (memcmp(in->ymm, out->ymm, sizeof(in->ymm)))
		fail("%s: ymm registers changed", who);
	if (memcmp(in->gp, out->gp, sizeof(in->gp)))
		fail("%s: r12-r15 changed", who);
}

/* ---- the workers --------------------------------------------------------- */

static void on_timer(int sig)
{
	char here;
	(void)sig;
	if (&here < altstack || &here >= altstack + ALTSTACK_SIZE)
		fail("SIGNALS: the handler is not on the sigaltstack");
	st.handled++;
}

static uint64_t checksum(void)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < words; i++)
		sum = sum * 31 + memory[i];
	return sum;
}

static void *worker(void *arg)
{
	int me = (int)(intptr_t)arg;
	static const char *names[] = { "SPIN", "SLEEP", "READ", "FUTEX", "SIGNALS", "SUM" };
	struct regs_in in, out;
	char c;
	fill(&in, me);
	if (me == SPIN || me == SIGNALS || me == SUM) {
		struct sched_param none = { 0 };
		sched_setscheduler(0, SCHED_IDLE, &none);
	}
	if (me == SIGNALS) {
		stack_t ss = { .ss_sp = altstack, .ss_size = ALTSTACK_SIZE };
		sigaltstack(&ss, NULL);
		pthread_sigmask(SIG_SETMASK, &signals_mask, NULL);
		sched_setaffinity(0, sizeof(signals_cpus), &signals_cpus);
		struct sigevent ev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGUSR1 };
		ev._sigev_un._tid = gettid();
		timer_t timer;
		struct itimerspec every = { { 0, 2000000 }, { 0, 2000000 } };
		timer_create(CLOCK_MONOTONIC, &ev, &timer);
		timer_settime(timer, 0, &every, NULL);
	}
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	for (;;) {
		switch (me) {
		case SPIN:
			spin_round(&in, &out);
			compare(names[me], &in, &out);
			break;
		case SLEEP:
			sleep_round(&in, &out);
			compare(names[me], &in, &out);
			break;
		case READ:
			if (read(feed_pipe[0], &c, 1) != 1 && errno != EINTR)
				fail("READ: read: %s", strerror(errno));
			break;
		case FUTEX:
			syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
			__atomic_store_n(&futex_word, 0, __ATOMIC_SEQ_CST);
			break;
		case SIGNALS: {
			stack_t now;
			spin_round(&in, &out);
			compare(names[me], &in, &out);
			sigaltstack(NULL, &now);
			if (now.ss_sp != altstack || now.ss_size != ALTSTACK_SIZE || now.ss_flags)
				fail("SIGNALS: sigaltstack changed");
			break;
		}
		case SUM:
			if (checksum() != memory_sum)
				fail("SUM: the memory checksum changed");
			break;
		}
		check_mask_and_affinity(names[me], me == SIGNALS ? &signals_mask : &worker_mask,
					me == SIGNALS ? &signals_cpus : &all_cpus);
		if (me == SUM)
			st.sums++;
		else
			st.progress[me]++;
	}
	return NULL;
}

/* ---- seccomp: everything the process does from here on, nothing else -- */

#define ALLOW(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), \
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)

static void install_filter(int allow_sigreturn, int allow_dump)
{
	struct sock_filter prog[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		ALLOW(SYS_read), ALLOW(SYS_write), ALLOW(SYS_nanosleep), ALLOW(SYS_clock_nanosleep),
		ALLOW(SYS_rt_sigprocmask), ALLOW(SYS_sched_getaffinity), ALLOW(SYS_sigaltstack),
		ALLOW(SYS_futex), ALLOW(SYS_clock_gettime), ALLOW(SYS_exit), ALLOW(SYS_exit_group),
		ALLOW(SYS_getpid), ALLOW(SYS_gettid),
		/* what the kernel runs to go on with nanosleep() after any stop */
		ALLOW(SYS_restart_syscall),
		ALLOW(allow_sigreturn ? SYS_rt_sigreturn : SYS_write),
		/* what hiber runs in a process it dumps (its log warns of the rest) */
		ALLOW(allow_dump ? SYS_prctl : SYS_write), ALLOW(allow_dump ? SYS_brk : SYS_write),
		ALLOW(allow_dump ? SYS_mmap : SYS_write), ALLOW(allow_dump ? SYS_munmap : SYS_write),
		ALLOW(allow_dump ? SYS_rt_sigaction : SYS_write),
		ALLOW(allow_dump ? SYS_getitimer : SYS_write),
		ALLOW(allow_dump ? SYS_timer_gettime : SYS_write),
		ALLOW(allow_dump ? SYS_timer_getoverrun : SYS_write),
		ALLOW(allow_dump ? SYS_membarrier : SYS_write),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
	};
	struct sock_fprog fprog = { sizeof(prog) / sizeof(prog[0]), prog };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fprog)) {
		perror("seccomp");
		exit(2);
	}
}

static void run(const char *filter, const char *children)
{
	char line[256];
	pthread_t t;
	if (pipe(feed_pipe))
		exit(2);
	pthread_sigmask(SIG_SETMASK, &main_mask, NULL);
	for (int i = 0; i < WORKERS; i++) {
		if (i == SIGNALS && !with_signals)
			continue;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_sigmask(SIG_SETMASK, &worker_mask, NULL);  /* inherited */
		pthread_create(&t, &attr, worker, (void *)(intptr_t)i);
		pthread_sigmask(SIG_SETMASK, &main_mask, NULL);
	}
	while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < WORKERS - !with_signals)
		usleep(1000);  /* threads set up (rseq, timers) before any filter */
	if (strcmp(filter, "none"))
		install_filter(strcmp(filter, "nosigreturn"), !strcmp(filter, "sandbox"));
	/* children say they are ready before the parent does */
	int n = children ? snprintf(line, sizeof(line), "READY pid=%d status=%p children=%s\n",
				    getpid(), (void *)&st, children)
			 : snprintf(line, sizeof(line), "CHILD-READY pid=%d\n", getpid());
	if (write(1, line, n) != n)
		exit(2);
	/* progress is judged in rounds of this thread, not in time: a
	 * process stopped for a while has not stalled */
	uint64_t last[SUM] = { 0 }, changed[SUM] = { 0 };
	for (;;) {
		struct timespec ms = { 0, 5000000 };
		nanosleep(&ms, NULL);
		if (write(feed_pipe[1], "x", 1) != 1)
			fail("main: feeding READ: %s", strerror(errno));
		__atomic_store_n(&futex_word, 1, __ATOMIC_SEQ_CST);
		syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
		check_mask_and_affinity("main", &main_mask, &all_cpus);
		for (int i = 0; i < SUM; i++) {
			if (st.progress[i] != last[i]) {
				last[i] = st.progress[i];
				changed[i] = st.rounds;
			} else if (st.rounds - changed[i] > 2000 && (i != SIGNALS || with_signals)) {
				fail("worker %d made no progress in 2000 rounds", i);
				changed[i] = st.rounds;
			}
		}
		st.rounds++;
	}
}

int main(int argc, char **argv)
{
	if (!__builtin_cpu_supports("avx")) {
		fprintf(stderr, "unharmed: this CPU has no AVX\n");
		return 3;
	}
	if (argc != 4) {
		fprintf(stderr, "usage: unharmed MIB CHILDREN none|filter|sandbox|nosigreturn\n");
		return 2;
	}
	/* The tests start each target in a session of its own, and with
	 * autogroup scheduling a session is a scheduling group that competes
	 * as a whole with the group running hiber: SCHED_IDLE only yields
	 * inside its group. At autogroup nice 19 the busy workers stay out of
	 * hiber's way, as the header promises (no autogroups: nothing to do). */
	FILE *group = fopen("/proc/self/autogroup", "w");
	if (group) {
		fputs("19", group);
		fclose(group);
	}
	size_t mib = strtoul(argv[1], NULL, 0);
	int children = atoi(argv[2]);
	const char *filter = argv[3];
	with_signals = strcmp(filter, "nosigreturn") != 0;
	words = (mib << 20) / 8;
	memory = mmap(NULL, words * 8 + 8, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t x = 88172645463325252ULL;
	for (size_t i = 0; i < words; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memory[i] = x;
	}
	memory_sum = checksum();
	altstack = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	sched_getaffinity(0, sizeof(all_cpus), &all_cpus);
	CPU_ZERO(&signals_cpus);
	for (int cpu = CPU_SETSIZE - 1; cpu >= 0; cpu--)
		if (CPU_ISSET(cpu, &all_cpus)) {
			CPU_SET(cpu, &signals_cpus);  /* the last CPU only */
			break;
		}
	sigemptyset(&main_mask);
	sigaddset(&main_mask, SIGUSR2);
	sigaddset(&main_mask, SIGUSR1);
	worker_mask = main_mask;
	sigaddset(&worker_mask, SIGWINCH);
	sigemptyset(&signals_mask);
	sigaddset(&signals_mask, SIGUSR2);
	sigaddset(&signals_mask, SIGWINCH);
	if (with_signals) {
		struct sigaction sa = { .sa_handler = on_timer, .sa_flags = SA_ONSTACK | SA_RESTART };
		sigemptyset(&sa.sa_mask);
		sigaction(SIGUSR1, &sa, NULL);
	}
	char pids[128] = "";
	for (int i = 0; i < children; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			run(filter, NULL);
			return 0;
		}
		snprintf(pids + strlen(pids), sizeof(pids) - strlen(pids), "%s%d", i ? "," : "",
			 pid);
	}
	run(filter, children ? pids : "-");
	return 0;
}
