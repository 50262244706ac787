/* Seccomp state in its forms; after restore every thread checks that its
 * filters still answer as they did and /proc shows the same mode and count.
 * Usage: seccomp MODE
 *   chains    three threads (main, t1, t2); main installs with TSYNC a filter K
 *             that kills the process on calls only a restore makes
 *             (set_robust_list, set_tid_address, setitimer, timer_create,
 *             rt_[tg]sigqueueinfo, rseq, preadv, setresuid, setgroups), then
 *             A (getppid fails with 1001, LOG flag); t1 adds B (getuid: 1002)
 *   tsync     the same K and A on every thread by TSYNC and nothing else: after
 *             restore, main installs D (getgid: 1003) with TSYNC, which only
 *             works when all threads share their filters again
 *   late      one thread, no no_new_privs: A installed with CAP_SYS_ADMIN, which
 *             is then dropped from the effective and permitted sets
 *   strict    t1 in strict mode, echoing bytes main sends it through pipes
 *   echo      t1 echoing the same way, not in strict mode (the tests put it
 *             into strict mode in the images)
 *   allowlist one thread killed on any call but the few it makes
 *   notify    a filter that notifies a user-space listener (refused at dump) */
#include "harness.h"

#include <errno.h>
#include <stddef.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#define RET_ERRNO(e) (SECCOMP_RET_ERRNO | (e))
#define LOAD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define ON(nr, action) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), \
		       BPF_STMT(BPF_RET | BPF_K, (action))
#define ALLOW BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
#define KILL SECCOMP_RET_KILL_PROCESS

static int install(struct sock_filter *insns, unsigned short n, unsigned flags)
{
	struct sock_fprog prog = { n, insns };
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

static int filter_k(unsigned flags)
{
	struct sock_filter f[] = {
		LOAD_NR,
		ON(SYS_set_robust_list, KILL), ON(SYS_set_tid_address, KILL),
		ON(SYS_setitimer, KILL), ON(SYS_timer_create, KILL),
		ON(SYS_rt_sigqueueinfo, KILL), ON(SYS_rt_tgsigqueueinfo, KILL),
		ON(SYS_rseq, KILL), ON(SYS_preadv, KILL), ON(SYS_setresuid, KILL),
		ON(SYS_setgroups, KILL),
		ALLOW };
	return install(f, sizeof(f) / sizeof(f[0]), flags);
}

static int filter_on(int nr, int err, unsigned flags)
{
	struct sock_filter f[] = { LOAD_NR, ON(nr, RET_ERRNO(err)), ALLOW };
	return install(f, sizeof(f) / sizeof(f[0]), flags);
}

static int allowlist(void)
{
	struct sock_filter f[] = {
		LOAD_NR,
		ON(SYS_read, SECCOMP_RET_ALLOW), ON(SYS_write, SECCOMP_RET_ALLOW),
		ON(SYS_pause, SECCOMP_RET_ALLOW), ON(SYS_rt_sigreturn, SECCOMP_RET_ALLOW),
		ON(SYS_rt_sigprocmask, SECCOMP_RET_ALLOW), ON(SYS_exit_group, SECCOMP_RET_ALLOW),
		ON(SYS_getppid, RET_ERRNO(1001)), ON(SYS_newfstatat, SECCOMP_RET_ALLOW),
		ON(SYS_fstat, SECCOMP_RET_ALLOW), ON(SYS_restart_syscall, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, KILL) };
	return install(f, sizeof(f) / sizeof(f[0]), 0);
}

/* errno of a raw syscall that a filter is expected to fail */
static int fails_with(long nr)
{
	errno = 0;
	return syscall(nr) == -1 ? errno : 0;
}

static long status_value(pid_t tid, const char *key)
{
	char path[64], line[256];
	long v = -1;
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
	FILE *f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key)) && line[strlen(key)] == ':')
			v = strtol(line + strlen(key) + 1, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

static pid_t t1_tid, t2_tid;
static int to_t1[2], from_t1[2], wake[2];
static int t1_getuid_errno, t2_getgid_errno, t1_getgid_errno;
static volatile int installed, t1_installed;
static const char *mode;

static void *t1_main(void *arg)
{
	(void)arg;
	t1_tid = gettid();
	char c;
	if (!strcmp(mode, "strict") || !strcmp(mode, "echo")) {
		if (!strcmp(mode, "strict"))
			prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT);
		/* only read, write and exit from here on */
		while (syscall(SYS_read, to_t1[0], &c, 1) == 1 && c != 'q') {
			c++;
			syscall(SYS_write, from_t1[1], &c, 1);
		}
		syscall(SYS_exit, 0);
	}
	while (!installed)
		usleep(1000);
	if (!strcmp(mode, "chains"))
		filter_on(SYS_getuid, 1002, 0);
	t1_installed = 1;
	read(wake[0], &c, 1);
	t1_getuid_errno = fails_with(SYS_getuid);
	t1_getgid_errno = fails_with(SYS_getgid);
	return NULL;
}

static void *t2_main(void *arg)
{
	(void)arg;
	t2_tid = gettid();
	char c;
	read(wake[0], &c, 1);
	t2_getgid_errno = fails_with(SYS_getgid);
	return NULL;
}

static int drop_sys_admin(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d))
		return -1;
	d[0].effective &= ~(1u << CAP_SYS_ADMIN);
	d[0].permitted &= ~(1u << CAP_SYS_ADMIN);
	return syscall(SYS_capset, &h, d);
}

int main(int argc, char **argv)
{
	harness_init();
	mode = argc > 1 ? argv[1] : "chains";
	int threaded = strcmp(mode, "late") && strcmp(mode, "allowlist") && strcmp(mode, "notify");
	int two = !strcmp(mode, "chains") || !strcmp(mode, "tsync");
	pthread_t t1, t2;
	pipe(to_t1);
	pipe(from_t1);
	pipe(wake);
	if (threaded) {
		block_check_signal(1);
		pthread_create(&t1, NULL, t1_main, NULL);
		if (two)
			pthread_create(&t2, NULL, t2_main, NULL);
		block_check_signal(0);
		while (!t1_tid || (two && !t2_tid))
			usleep(1000);
	}
	int bad = 0;
	if (!strcmp(mode, "chains") || !strcmp(mode, "tsync")) {
		bad |= prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0;
		bad |= filter_k(SECCOMP_FILTER_FLAG_TSYNC) != 0;
		bad |= filter_on(SYS_getppid, 1001, SECCOMP_FILTER_FLAG_TSYNC |
				 SECCOMP_FILTER_FLAG_LOG) != 0;
	} else if (!strcmp(mode, "late")) {
		bad |= filter_on(SYS_getppid, 1001, 0) != 0;
		bad |= drop_sys_admin() != 0;
	} else if (!strcmp(mode, "allowlist")) {
		bad |= prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0;
	} else if (!strcmp(mode, "notify")) {
		struct sock_filter f[] = { LOAD_NR, ON(SYS_getppid, SECCOMP_RET_USER_NOTIF), ALLOW };
		bad |= prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0;
		int listener = install(f, sizeof(f) / sizeof(f[0]), SECCOMP_FILTER_FLAG_NEW_LISTENER);
		bad |= listener < 0;
		close(listener);
	}
	installed = 1;
	while (threaded && !t1_installed && strcmp(mode, "strict") && strcmp(mode, "echo"))
		usleep(1000);
	usleep(20000);
	if (bad) {
		printf("setup failed: %s\n", strerror(errno));
		return 2;
	}
	long filters_main = status_value(gettid(), "Seccomp_filters");
	long filters_t1 = threaded ? status_value(t1_tid, "Seccomp_filters") : 0;
	ready("t1=%d t2=%d filters=%ld", t1_tid, t2_tid, filters_main);
	if (!strcmp(mode, "allowlist"))
		bad |= allowlist() != 0;  /* from here on: read, write, pause, exit */
	wait_for_check();

	if (!strcmp(mode, "allowlist")) {
		expect(fails_with(SYS_getppid) == 1001, "getppid not filtered");
		return report();
	}
	expect(status_value(gettid(), "Seccomp_filters") == filters_main,
	       "main has %ld filters, not %ld", status_value(gettid(), "Seccomp_filters"),
	       filters_main);
	if (threaded)
		expect(status_value(t1_tid, "Seccomp_filters") == filters_t1,
		       "t1 has %ld filters, not %ld", status_value(t1_tid, "Seccomp_filters"),
		       filters_t1);
	if (!strcmp(mode, "strict") || !strcmp(mode, "echo")) {
		char c = 'a';
		expect(status_value(t1_tid, "Seccomp") == 1, "t1 is in seccomp mode %ld",
		       status_value(t1_tid, "Seccomp"));
		write(to_t1[1], &c, 1);
		expect(read(from_t1[0], &c, 1) == 1 && c == 'b', "t1 did not echo");
		write(to_t1[1], "q", 1);
		pthread_join(t1, NULL);
		expect(status_value(gettid(), "Seccomp") == 0, "main is in seccomp mode");
		return report();
	}
	expect(fails_with(SYS_getppid) == 1001, "getppid not filtered in main");
	if (!strcmp(mode, "late")) {
		struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
		struct __user_cap_data_struct d[2];
		syscall(SYS_capget, &h, d);
		expect(!(d[0].effective & (1u << CAP_SYS_ADMIN)), "CAP_SYS_ADMIN is back");
		expect(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0, "no_new_privs appeared");
		return report();
	}
	expect(status_value(t2_tid, "Seccomp") == 2, "t2 lost its filters");
	if (!strcmp(mode, "tsync"))
		expect(filter_on(SYS_getgid, 1003, SECCOMP_FILTER_FLAG_TSYNC) == 0,
		       "TSYNC after restore failed: threads do not share their filters");
	write(wake[1], "xx", 2);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	if (!strcmp(mode, "chains"))
		expect(t1_getuid_errno == 1002, "getuid not filtered in t1 (%d)", t1_getuid_errno);
	if (!strcmp(mode, "tsync"))
		expect(t1_getgid_errno == 1003 && t2_getgid_errno == 1003,
		       "the TSYNC filter did not reach t1/t2 (%d, %d)", t1_getgid_errno,
		       t2_getgid_errno);
	return report();
}
