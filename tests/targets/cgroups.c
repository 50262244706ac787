/* A process in cgroups of its own: argv[1] is the name of a v1 hierarchy
 * (name=... as /proc/self/cgroup shows it), argv[2] where it is mounted.
 * The process moves into JOB (argv[3]), one thread of it into JOB/worker
 * (v1 moves single threads through "tasks"), and a child into JOB/child.
 * After the check signal each says where /proc shows it: all three must be
 * where they were put, the child telling its parent through a pipe.
 * With "ns" as argv[4] the process makes a cgroup namespace rooted at JOB
 * once inside it: /proc then shows the three at /, /worker and /child. */
#include "harness.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <sched.h>

static const char *hierarchy, *mnt, *job;
static int in_namespace;
static pid_t worker_tid;
static volatile int worker_stop;

static void move_into(const char *sub, const char *file, int id)
{
	char path[512], text[32];
	snprintf(path, sizeof(path), "%s/%s%s/%s", mnt, job, sub, file);
	int fd = open(path, O_WRONLY);
	int n = snprintf(text, sizeof(text), "%d", id);
	if (fd < 0 || write(fd, text, n) != n) {
		printf("cannot write %d to %s\n", id, path);
		exit(2);
	}
	close(fd);
}

/* where /proc/self/task/TID/cgroup puts this task in our hierarchy */
static int is_in(pid_t tid, const char *sub)
{
	char path[64], line[512], want[512];
	snprintf(path, sizeof(path), "/proc/self/task/%d/cgroup", tid);
	if (in_namespace)
		snprintf(want, sizeof(want), "%s:%s\n", hierarchy, *sub ? sub : "/");
	else
		snprintf(want, sizeof(want), "%s:/%s%s\n", hierarchy, job, sub);
	FILE *f = fopen(path, "r");
	int found = 0;
	while (f && fgets(line, sizeof(line), f))
		if (!strcmp(strchr(line, ':') + 1, want))
			found = 1;
	if (f)
		fclose(f);
	if (!found)
		printf("task %d: not in %s", tid, want);
	return found;
}

static void *worker(void *arg)
{
	(void)arg;
	worker_tid = gettid();
	while (!worker_stop)
		usleep(1000);
	return NULL;
}

int main(int argc, char **argv)
{
	int to_child[2], from_child[2];
	char verdict = 0;
	harness_init();
	hierarchy = argv[1], mnt = argv[2], job = argv[3];
	move_into("", "cgroup.procs", getpid());
	in_namespace = argc > 4 && !strcmp(argv[4], "ns");
	if (in_namespace && unshare(CLONE_NEWCGROUP)) {
		printf("unshare(CLONE_NEWCGROUP) failed\n");
		return 2;
	}

	pipe(to_child);
	pipe(from_child);
	pid_t child = fork();
	if (child == 0) {
		move_into("/child", "cgroup.procs", getpid());
		char go;
		read(to_child[0], &go, 1);
		verdict = is_in(getpid(), "/child") ? 'y' : 'n';
		write(from_child[1], &verdict, 1);
		_exit(0);
	}

	pthread_t thread = start_thread(worker, NULL, &worker_tid);
	move_into("/worker", "tasks", worker_tid);
	ready("child=%d worker=%d", child, worker_tid);
	wait_for_check();

	expect(is_in(getpid(), ""), "the process moved");
	expect(is_in(worker_tid, "/worker"), "its thread moved");
	write(to_child[1], "g", 1);
	read(from_child[0], &verdict, 1);
	expect(verdict == 'y', "the child moved");
	worker_stop = 1;
	pthread_join(thread, NULL);
	waitpid(child, NULL, 0);
	return report();
}
