/* A process in a chroot: after a restore, its root and its cwd are the
 * ones it had (usage: chrooted DIR, a directory holding a file "marker"
 * and a directory "inside"). */
#include "harness.h"
#include <sys/stat.h>

int main(int argc, char **argv)
{
	harness_init();
	if (argc < 2 || chroot(argv[1]) || chdir("/inside")) {
		perror("chroot");
		return 2;
	}
	ready("root=%s", argv[1]);
	wait_for_check();
	struct stat st;
	char cwd[256];
	expect(stat("/marker", &st) == 0, "/marker is not in the root");
	expect(getcwd(cwd, sizeof(cwd)) && !strcmp(cwd, "/inside"), "cwd is %s", cwd);
	return report();
}
