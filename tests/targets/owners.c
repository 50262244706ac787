/* Open files with owners (fcntl F_SETOWN_EX, F_SETSIG): after a restore,
 * each has the same owner, signal and owner credentials, and data arriving
 * on an O_ASYNC pipe signals the owner it always did.
 *
 *   pipe 0  owner: this process, F_SETSIG SIGUSR1
 *   pipe 1  owner: this process group, plain SIGIO
 *   pipe 2  owner: a worker thread (F_OWNER_TID), F_SETSIG SIGRTMIN+3,
 *           set with the effective uid 65534 (F_GETOWNER_UIDS: 0, 65534)
 *   FIFO    owner: this process, F_SETSIG SIGRTMIN+4
 *
 * usage: owners FIFO_PATH [FOREIGN_PID]: with FOREIGN_PID, one more pipe
 * is owned by that process, which the tree does not hold. */
#include "harness.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#ifndef F_GETOWNER_UIDS
#define F_GETOWNER_UIDS 17
#endif

enum { OWNED = 4 };
static int rd[OWNED + 1], wr[OWNED + 1];
static int owned = OWNED;
static pid_t worker_tid;
static volatile sig_atomic_t got_fd[OWNED + 1], got_signo[OWNED + 1], got_tid[OWNED + 1];

struct want {
	int type, pid, signo;
	unsigned uid, euid;
} want[OWNED + 1];

static void on_io(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	for (int i = 0; i < owned; i++)
		if (si->si_fd == rd[i]) {
			got_fd[i]++;
			got_signo[i] = sig;
			got_tid[i] = (sig_atomic_t)syscall(SYS_gettid);
		}
}

static void *worker(void *arg)
{
	(void)arg;
	worker_tid = (pid_t)syscall(SYS_gettid);
	for (;;)
		pause();
	return NULL;
}

static void own(int i, int type, pid_t pid, int signo, unsigned euid)
{
	struct f_owner_ex owner = { .type = type, .pid = pid };
	if (fcntl(rd[i], F_SETFL, O_ASYNC | O_NONBLOCK))
		perror("F_SETFL");
	if (signo && fcntl(rd[i], F_SETSIG, signo))
		perror("F_SETSIG");
	if (euid && setresuid(-1, euid, -1))
		perror("setresuid");
	if (fcntl(rd[i], F_SETOWN_EX, &owner))
		perror("F_SETOWN_EX");
	if (euid && setresuid(-1, 0, -1))
		perror("setresuid back");
	want[i] = (struct want){ type, pid, signo, getuid(), euid ? euid : geteuid() };
}

static void check(int i)
{
	struct f_owner_ex owner;
	unsigned uids[2];
	expect(fcntl(rd[i], F_GETOWN_EX, &owner) == 0, "F_GETOWN_EX %d: %s", i, strerror(errno));
	expect(owner.type == want[i].type && owner.pid == want[i].pid,
	       "owner %d: type %d pid %d, not type %d pid %d", i, owner.type, owner.pid,
	       want[i].type, want[i].pid);
	int signo = fcntl(rd[i], F_GETSIG);
	expect(signo == want[i].signo, "F_GETSIG %d: %d, not %d", i, signo, want[i].signo);
	expect(fcntl(rd[i], F_GETOWNER_UIDS, uids) == 0, "F_GETOWNER_UIDS %d", i);
	expect(uids[0] == want[i].uid && uids[1] == want[i].euid, "owner uids %d: %u %u, not %u %u",
	       i, uids[0], uids[1], want[i].uid, want[i].euid);
	if (want[i].type == F_OWNER_PGRP)
		return;  /* an owner group gets SIGIO without its siginfo (no si_fd) */
	got_fd[i] = 0;
	if (write(wr[i], "x", 1) != 1)
		perror("write");
	for (int n = 0; n < 2000 && !got_fd[i]; n++)
		usleep(1000);
	expect(got_fd[i], "no signal for data on %d", i);
	expect(got_signo[i] == want[i].signo, "%d: signal %d, not %d", i, got_signo[i],
	       want[i].signo);
	if (want[i].type == F_OWNER_TID)
		expect(got_tid[i] == worker_tid, "%d: the signal went to thread %d, not %d", i,
		       got_tid[i], worker_tid);
}

int main(int argc, char **argv)
{
	harness_init();
	struct sigaction sa = { .sa_sigaction = on_io, .sa_flags = SA_SIGINFO | SA_RESTART };
	sigemptyset(&sa.sa_mask);
	int signals[] = { SIGIO, SIGUSR1, SIGRTMIN + 3, SIGRTMIN + 4 };
	for (unsigned i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		sigaction(signals[i], &sa, NULL);

	start_thread(worker, NULL, &worker_tid);
	for (int i = 0; i < 3; i++) {
		int p[2];
		if (pipe(p))
			return 2;
		rd[i] = p[0];
		wr[i] = p[1];
	}
	own(0, F_OWNER_PID, getpid(), SIGUSR1, 0);
	own(1, F_OWNER_PGRP, getpgrp(), 0, 0);
	own(2, F_OWNER_TID, worker_tid, SIGRTMIN + 3, 65534);
	unlink(argv[1]);
	if (mkfifo(argv[1], 0600))
		return 2;
	rd[3] = open(argv[1], O_RDWR);
	wr[3] = open(argv[1], O_WRONLY);
	own(3, F_OWNER_PID, getpid(), SIGRTMIN + 4, 0);
	if (argc > 2) {
		int p[2];
		if (pipe(p))
			return 2;
		rd[OWNED] = p[0];
		wr[OWNED] = p[1];
		own(OWNED, F_OWNER_PID, atoi(argv[2]), 0, 0);
	}
	for (int i = 0; i < owned; i++)
		check(i);
	ready("fds=%d", owned);
	wait_for_check();
	for (int i = 0; i < owned; i++)
		check(i);
	return report();
}
