/* A process tree of three levels:
 *
 *   root (session leader, group root)
 *   ├── a        (root's session, a group of its own)
 *   │   └── a1   (in a's group)
 *   ├── b        (a new session: b leads session and group)
 *   │   └── b1   (b's session, a group of its own)
 *   │       └── b1a  (in b1's group)
 *   └── z        (exits with status 7 at once: a zombie until checked)
 *
 * Shared through fork: anonymous shared memory, a memfd mapping, a pipe and
 * an open file (one position). After the check signal, which each process
 * passes on to its children, every process checks its pid, ppid, pgid and
 * sid, writes its mark into the shared memory and the file, and exits 0 or
 * 1; the root reaps everyone, z with status 7, and checks the sharing. */
#include "harness.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define MAX_KIDS 4

struct expected {
	pid_t pid, ppid, pgid, sid;
};

static unsigned char *shared_anon, *shared_memfd;
static int pipe_fds[2], file_fd;
static pid_t kids[MAX_KIDS];
static int nkids;

static int verify(const struct expected *e, const char *name, int slot)
{
	int bad = 0;
	if (getpid() != e->pid || getppid() != e->ppid || getpgrp() != e->pgid ||
	    getsid(0) != e->sid) {
		printf("FAIL %s: pid %d/%d ppid %d/%d pgid %d/%d sid %d/%d\n", name, getpid(),
		       e->pid, getppid(), e->ppid, getpgrp(), e->pgid, getsid(0), e->sid);
		bad = 1;
	}
	shared_anon[slot] = (unsigned char)('A' + slot);
	shared_memfd[slot] = (unsigned char)('a' + slot);
	write(file_fd, name, 1);
	if (slot == 1)
		write(pipe_fds[1], "from-a", 6);
	return bad;
}

static int reap_kids(void)
{
	int bad = 0, status;
	for (int i = 0; i < nkids; i++) {
		if (waitpid(kids[i], &status, 0) != kids[i] || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0) {
			printf("FAIL child %d ended with status 0x%x\n", kids[i], status);
			bad = 1;
		}
	}
	return bad;
}

static void forward_check(void)
{
	for (int i = 0; i < nkids; i++)
		kill(kids[i], CHECK_SIGNAL);
}

/* a member of the tree: wait, pass the check on, check itself */
static void member(const char *name, int slot, struct expected e, int ready_fd)
{
	write(ready_fd, "x", 1);
	wait_for_check();
	forward_check();
	int bad = verify(&e, name, slot);
	bad |= reap_kids();
	fflush(stdout);
	_exit(bad);
}

static pid_t spawn(void (*body)(int), int ready_fd)
{
	pid_t pid = fork();
	if (pid == 0) {
		nkids = 0;
		body(ready_fd);
	}
	kids[nkids++] = pid;
	return pid;
}

static void b1a(int fd)
{
	member("x", 5, (struct expected){ getpid(), getppid(), getpgrp(), getsid(0) }, fd);
}

static void b1(int fd)
{
	setpgid(0, 0);
	spawn(b1a, fd);
	member("w", 4, (struct expected){ getpid(), getppid(), getpid(), getsid(0) }, fd);
}

static void b(int fd)
{
	setsid();
	spawn(b1, fd);
	member("v", 3, (struct expected){ getpid(), getppid(), getpid(), getpid() }, fd);
}

static void a1(int fd)
{
	member("u", 2, (struct expected){ getpid(), getppid(), getpgrp(), getsid(0) }, fd);
}

static void a(int fd)
{
	setpgid(0, 0);
	spawn(a1, fd);
	member("t", 1, (struct expected){ getpid(), getppid(), getpid(), getsid(0) }, fd);
}

static void z(int fd)
{
	(void)fd;
	_exit(7);
}

int main(int argc, char **argv)
{
	int ready_pipe[2];
	harness_init();
	shared_anon = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int memfd = memfd_create("family", 0);
	ftruncate(memfd, 4096);
	fchmod(memfd, 0642); /* a memfd is made 0777: its mode is its own */
	shared_memfd = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	pipe(pipe_fds);
	file_fd = open(argc > 1 ? argv[1] : "family.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
	write(file_fd, "start:", 6);
	pipe(ready_pipe);

	pid_t pa = spawn(a, ready_pipe[1]);
	pid_t pb = spawn(b, ready_pipe[1]);
	pid_t pz = spawn(z, ready_pipe[1]);
	char buf[64];
	for (int i = 0; i < 5; i++) /* a, a1, b, b1, b1a */
		read(ready_pipe[0], buf, 1);
	usleep(50000); /* z has exited: a zombie */
	ready("a=%d b=%d z=%d", pa, pb, pz);
	wait_for_check();

	forward_check();
	struct expected e = { getpid(), getppid(), getpid(), getpid() };
	e.ppid = getppid();
	int bad = verify(&e, "r", 0);
	int status;
	expect(waitpid(pz, &status, 0) == pz && WIFEXITED(status) && WEXITSTATUS(status) == 7,
	       "zombie status 0x%x", status);
	nkids = 2; /* a and b: z is reaped above */
	bad |= reap_kids();
	expect(!bad, "a member failed its checks");
	expect(!memcmp(shared_anon, "ABCDEF", 6), "shared memory: %.6s", shared_anon);
	expect(!memcmp(shared_memfd, "abcdef", 6), "memfd: %.6s", shared_memfd);
	struct stat st;
	expect(fstat(memfd, &st) == 0 && (st.st_mode & 07777) == 0642, "memfd mode %o",
	       st.st_mode & 07777);
	memset(buf, 0, sizeof(buf));
	expect(read(pipe_fds[0], buf, sizeof(buf)) == 6 && !strcmp(buf, "from-a"),
	       "pipe: '%s'", buf);
	/* six one-byte writes through one shared open file: one position */
	expect(lseek(file_fd, 0, SEEK_CUR) == 12, "file position %ld",
	       (long)lseek(file_fd, 0, SEEK_CUR));
	return report();
}
