/* Zombies of every kind, and a process group whose leader is gone:
 *
 *   root
 *   ├── killed     killed by SIGKILL: a zombie
 *   ├── crashed    died of SIGSEGV: a zombie
 *   ├── exited     exited with status 5: a zombie
 *   ├── member     alive, in group L          } made by L with CLONE_PARENT,
 *   └── z-member   exited 0, in group L       } so they are root's children
 *
 * L made its own group, made the two members, and exited; the root reaped
 * it: group L has no leader. After the check signal the root reaps each
 * zombie with its status, finds both members in group L, and finds no
 * other child (the helper a restore may make for L must be gone). */
#include "harness.h"

#include <errno.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static pid_t spawn_dying(int how)
{
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_DUMPABLE, 0); /* no core file from the crash */
		if (how == SIGSEGV)
			*(volatile int *)NULL = 0;
		else if (how)
			kill(getpid(), how);
		_exit(5);
	}
	return pid;
}

static pid_t clone_parent(void)
{
	return syscall(SYS_clone, CLONE_PARENT | SIGCHLD, NULL, NULL, NULL, 0);
}

int main(void)
{
	harness_init();
	pid_t killed = spawn_dying(SIGKILL), crashed = spawn_dying(SIGSEGV);
	pid_t exited = spawn_dying(0);
	int pids[2];
	int to_root[2];
	pipe(to_root);
	pid_t leader = fork();
	if (leader == 0) {
		setpgid(0, 0);
		pid_t member = clone_parent();
		if (member == 0) {
			for (;;)
				pause();
		}
		pid_t z_member = clone_parent();
		if (z_member == 0)
			_exit(0);
		pids[0] = member;
		pids[1] = z_member;
		write(to_root[1], pids, sizeof(pids));
		_exit(0);
	}
	int status;
	expect(read(to_root[0], pids, sizeof(pids)) == sizeof(pids), "no member pids");
	expect(waitpid(leader, &status, 0) == leader, "reap the leader");
	siginfo_t info;
	pid_t zombies[] = { killed, crashed, exited, pids[1] };
	for (int i = 0; i < 4; i++) /* each is a zombie before the dump */
		waitid(P_PID, zombies[i], &info, WEXITED | WNOWAIT);
	ready("leader=%d member=%d", leader, pids[0]);
	wait_for_check();

	expect(waitpid(killed, &status, 0) == killed && WIFSIGNALED(status) &&
	       WTERMSIG(status) == SIGKILL, "killed zombie: status 0x%x", status);
	expect(waitpid(crashed, &status, 0) == crashed && WIFSIGNALED(status) &&
	       WTERMSIG(status) == SIGSEGV, "crashed zombie: status 0x%x", status);
	expect(waitpid(exited, &status, 0) == exited && WIFEXITED(status) &&
	       WEXITSTATUS(status) == 5, "exited zombie: status 0x%x", status);
	expect(getpgid(pids[0]) == leader, "member is in group %d, not %d", getpgid(pids[0]), leader);
	expect(getpgid(pids[1]) == leader, "zombie member is in group %d, not %d",
	       getpgid(pids[1]), leader);
	expect(waitpid(pids[1], &status, 0) == pids[1] && WIFEXITED(status), "zombie member");
	kill(pids[0], SIGKILL);
	expect(waitpid(pids[0], &status, 0) == pids[0], "member");
	expect(waitpid(-1, &status, WNOHANG) == -1 && errno == ECHILD, "a child nobody made");
	return report();
}
