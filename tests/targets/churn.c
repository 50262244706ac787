/* Forks a short-lived child every millisecond and reaps it, so a dump always
 * meets children being born and dying: each lives 0 to 1.5 ms (a dump finds
 * some asleep, some zombies), then exits with 3. After the check it reaps the
 * last ones and verifies that every child it forked came back with 3. */
#include "harness.h"

#include <sys/wait.h>

int main(void)
{
	unsigned long forks = 0, reaped = 0;
	harness_init();
	ready("churning=1");
	while (!check_requested) {
		pid_t pid = fork();
		if (pid == 0) {
			usleep(forks % 4 * 500);
			_exit(3);
		}
		if (pid > 0)
			forks++;
		usleep(1000);
		int status;
		while (waitpid(-1, &status, WNOHANG) > 0)
			reaped += WIFEXITED(status) && WEXITSTATUS(status) == 3;
	}
	int status;
	while (waitpid(-1, &status, 0) > 0)
		reaped += WIFEXITED(status) && WEXITSTATUS(status) == 3;
	expect(forks > 0 && reaped == forks, "forked %lu, reaped %lu", forks, reaped);
	return report();
}
