/* Files of the tree's own /proc directories held open: the root holds its
 * own /proc/PID/maps (part read: a position) and its child's
 * /proc/PID/status; the child holds its parent's /proc/PID/stat. After the
 * check signal each must describe the restored processes: the maps file
 * shows a mapping made before the dump, at its address, and reads on from
 * where it was; the status file names the child; the stat file the root. */
#include "harness.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>

static int contains(int fd, const char *needle, off_t from)
{
	static char buf[1 << 16];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	return strstr(buf, needle) != NULL;
}

int main(void)
{
	harness_init();
	char *marker = mmap(NULL, 3 * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char path[64], line[64];
	int to_child[2], from_child[2];
	pipe(to_child);
	pipe(from_child);
	pid_t root = getpid();
	pid_t child = fork();
	if (child == 0) {
		snprintf(path, sizeof(path), "/proc/%d/stat", root);
		int stat = open(path, O_RDONLY);
		char c;
		write(from_child[1], "r", 1);
		read(to_child[0], &c, 1); /* the root checked: now the child checks */
		snprintf(line, sizeof(line), "%d (", root);
		_exit(contains(stat, line, 0) ? 0 : 1);
	}
	char c;
	read(from_child[0], &c, 1);
	snprintf(path, sizeof(path), "/proc/%d/maps", root);
	int maps = open(path, O_RDONLY);
	char first[256];
	ssize_t n = read(maps, first, 100);
	snprintf(path, sizeof(path), "/proc/%d/status", child);
	int status_fd = open(path, O_RDONLY);
	ready("child=%d", child);
	wait_for_check();

	expect(n == 100 && lseek(maps, 0, SEEK_CUR) == 100, "maps position %ld",
	       (long)lseek(maps, 0, SEEK_CUR));
	snprintf(line, sizeof(line), "%lx-%lx r--p", (unsigned long)marker,
		 (unsigned long)marker + 3 * 4096);
	expect(contains(maps, line, 0), "own maps file does not show %s", line);
	snprintf(line, sizeof(line), "Pid:\t%d\n", child);
	expect(contains(status_fd, line, 0), "child's status file does not name it");
	write(to_child[1], "c", 1);
	int status;
	waitpid(child, &status, 0);
	expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's stat file is wrong");
	return report();
}
