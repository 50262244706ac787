/* A small process tree: the root, child A with a grandchild, and child B in
 * a process group of its own. Each child waits until it is killed; the root
 * reports every pid once all are up. */
#include "harness.h"

#include <sys/wait.h>

static pid_t spawn(int ready_fd, int new_group, int grandchild)
{
	pid_t pid = fork();
	if (pid)
		return pid;
	if (new_group)
		setpgid(0, 0);
	if (grandchild)
		spawn(ready_fd, 0, 0);
	write(ready_fd, "x", 1);
	for (;;)
		pause();
}

int main(void)
{
	int ready_pipe[2];
	char buf[4];
	harness_init();
	pipe(ready_pipe);
	pid_t a = spawn(ready_pipe[1], 0, 1);
	pid_t b = spawn(ready_pipe[1], 1, 0);
	for (int i = 0; i < 3; i++)
		read(ready_pipe[0], buf, 1);
	ready("a=%d b=%d", a, b);
	wait_for_check();
	kill(a, SIGKILL);
	kill(b, SIGKILL);
	waitpid(a, NULL, 0);
	waitpid(b, NULL, 0);
	return report();
}
