/* Credentials that differ from root's, per thread: the main thread and a
 * second thread each set their own (raw syscalls: glibc's setresuid would
 * change every thread), then both are checked after restore.
 *   main:   groups 100,200,300; uids 1000/1001/1002 fsuid 1003; gids
 *           2000/2001/2002 fsgid 2003; inheritable NET_RAW+KILL, ambient
 *           NET_RAW, bounding without SYS_BOOT and MKNOD, permitted without
 *           SYS_MODULE, effective without SYS_MODULE and SYS_ADMIN;
 *           securebits KEEP_CAPS|NO_SETUID_FIXUP|NO_CAP_AMBIENT_RAISE;
 *           no_new_privs; dumpable 1; parent-death signal SIGUSR2;
 *           loginuid 1234 when it was unset (it is inherited otherwise).
 *   thread: uid/gid 3000, group 5, no capabilities at all (the kernel
 *           clears them when every uid leaves 0). */
#include "harness.h"

#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <fcntl.h>

#define CAP(n) (1ULL << (n))

static pid_t thread_tid;
static int park[2];

struct caps { unsigned long long inh, prm, eff, bnd, amb; };

static unsigned long long status_hex(pid_t tid, const char *key)
{
	char path[64], line[256];
	unsigned long long v = ~0ULL;
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
	FILE *f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key)))
			sscanf(line + strlen(key) + 1, "%llx", &v);
	if (f)
		fclose(f);
	return v;
}

static void status_text(pid_t tid, const char *key, char *out, size_t n)
{
	char path[64], line[256];
	out[0] = 0;
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
	FILE *f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key))) {
			char *v = line + strlen(key) + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			size_t len = strcspn(v, "\n");
			while (len && v[len - 1] == ' ')
				len--;
			v[len] = 0;
			snprintf(out, n, "%s", v);
		}
	if (f)
		fclose(f);
}

static struct caps caps_of(pid_t tid)
{
	struct caps c = { status_hex(tid, "CapInh"), status_hex(tid, "CapPrm"),
			  status_hex(tid, "CapEff"), status_hex(tid, "CapBnd"),
			  status_hex(tid, "CapAmb") };
	return c;
}

static int set_caps(unsigned long long eff, unsigned long long prm, unsigned long long inh)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2] = {
		{ (unsigned)eff, (unsigned)prm, (unsigned)inh },
		{ (unsigned)(eff >> 32), (unsigned)(prm >> 32), (unsigned)(inh >> 32) } };
	return syscall(SYS_capset, &h, d);
}

static void *other_thread(void *arg)
{
	(void)arg;
	gid_t g = 5;
	thread_tid = gettid();
	if (syscall(SYS_setgroups, 1, &g) || syscall(SYS_setresgid, 3000, 3000, 3000) ||
	    syscall(SYS_setresuid, 3000, 3000, 3000))
		printf("thread setup failed\n");
	char c;
	read(park[0], &c, 1);
	return NULL;
}

static void on_usr2(int sig) { (void)sig; }

static unsigned read_loginuid(void)
{
	unsigned v = 0;
	FILE *f = fopen("/proc/self/loginuid", "r");
	if (f) {
		if (fscanf(f, "%u", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v;
}

int main(void)
{
	harness_init();
	signal(SIGUSR2, on_usr2);
	pipe(park);
	pthread_t t = start_thread(other_thread, NULL, &thread_tid);
	usleep(20000);

	unsigned loginuid = read_loginuid();
	if (loginuid == 4294967295u) {
		int fd = open("/proc/self/loginuid", O_WRONLY);
		if (fd >= 0 && write(fd, "1234", 4) == 4)
			loginuid = 1234;
		if (fd >= 0)
			close(fd);
	}

	struct caps now = caps_of(gettid());
	unsigned long long inh = CAP(CAP_NET_RAW) | CAP(CAP_KILL);
	unsigned long long prm = now.prm & ~CAP(CAP_SYS_MODULE);
	unsigned long long eff = prm & ~CAP(CAP_SYS_ADMIN);
	gid_t groups[] = { 100, 200, 300 };
	int bad = 0;
	bad |= syscall(SYS_setgroups, 3, groups) != 0;
	bad |= prctl(PR_SET_SECUREBITS, SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP) != 0;
	bad |= syscall(SYS_setresgid, 2000, 2001, 2002) != 0;
	bad |= syscall(SYS_setresuid, 1000, 1001, 1002) != 0;
	syscall(SYS_setfsgid, 2003);
	syscall(SYS_setfsuid, 1003);
	bad |= set_caps(now.eff, now.prm, inh) != 0;
	bad |= prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT) != 0;
	bad |= prctl(PR_CAPBSET_DROP, CAP_MKNOD) != 0;
	bad |= prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_RAW, 0, 0) != 0;
	bad |= prctl(PR_SET_SECUREBITS, SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP |
		     SECBIT_NO_CAP_AMBIENT_RAISE) != 0;
	bad |= set_caps(eff, prm, inh) != 0;
	bad |= prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0;
	bad |= prctl(PR_SET_DUMPABLE, 1) != 0;
	bad |= prctl(PR_SET_PDEATHSIG, SIGUSR2) != 0;
	if (bad) {
		printf("setup failed\n");
		return 2;
	}
	struct caps before = caps_of(gettid());
	struct caps thread_before = caps_of(thread_tid);
	ready("tid=%d loginuid=%u", thread_tid, loginuid);
	wait_for_check();

	struct caps after = caps_of(gettid());
	expect(after.inh == before.inh, "inheritable %llx, not %llx", after.inh, before.inh);
	expect(after.prm == before.prm, "permitted %llx, not %llx", after.prm, before.prm);
	expect(after.eff == before.eff, "effective %llx, not %llx", after.eff, before.eff);
	expect(after.bnd == before.bnd, "bounding %llx, not %llx", after.bnd, before.bnd);
	expect(after.amb == CAP(CAP_NET_RAW), "ambient %llx", after.amb);
	expect(!(after.bnd & CAP(CAP_SYS_BOOT)) && (after.bnd & CAP(CAP_SYS_ADMIN)), "bounding");
	unsigned r, e, s;
	syscall(SYS_getresuid, &r, &e, &s);
	expect(r == 1000 && e == 1001 && s == 1002, "uids %u %u %u", r, e, s);
	expect(syscall(SYS_setfsuid, -1) == 1003, "fsuid");
	syscall(SYS_getresgid, &r, &e, &s);
	expect(r == 2000 && e == 2001 && s == 2002, "gids %u %u %u", r, e, s);
	expect(syscall(SYS_setfsgid, -1) == 2003, "fsgid");
	gid_t got[8];
	int n = getgroups(8, got);
	expect(n == 3 && got[0] == 100 && got[1] == 200 && got[2] == 300, "groups (%d)", n);
	int bits = prctl(PR_GET_SECUREBITS);
	expect(bits == (SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP | SECBIT_NO_CAP_AMBIENT_RAISE),
	       "securebits 0x%x", bits);
	expect(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, "no_new_privs");
	expect(prctl(PR_GET_DUMPABLE) == 1, "dumpable %d", prctl(PR_GET_DUMPABLE));
	int pdeath = 0;
	prctl(PR_GET_PDEATHSIG, &pdeath);
	expect(pdeath == SIGUSR2, "parent-death signal %d", pdeath);
	expect(read_loginuid() == loginuid, "loginuid %u, not %u", read_loginuid(), loginuid);

	struct caps thread_after = caps_of(thread_tid);
	char text[128];
	status_text(thread_tid, "Uid:", text, sizeof(text));
	expect(!strcmp(text, "3000\t3000\t3000\t3000"), "thread uids '%s'", text);
	status_text(thread_tid, "Gid:", text, sizeof(text));
	expect(!strcmp(text, "3000\t3000\t3000\t3000"), "thread gids '%s'", text);
	status_text(thread_tid, "Groups:", text, sizeof(text));
	expect(!strcmp(text, "5"), "thread groups '%s'", text);
	expect(thread_after.prm == 0 && thread_after.eff == 0 && thread_after.inh == 0,
	       "thread capabilities %llx/%llx/%llx", thread_after.prm, thread_after.eff,
	       thread_after.inh);
	expect(thread_after.bnd == thread_before.bnd, "thread bounding set");
	status_text(thread_tid, "NoNewPrivs:", text, sizeof(text));
	expect(!strcmp(text, "0"), "thread no_new_privs '%s'", text);

	write(park[1], "x", 1);
	pthread_join(t, NULL);
	return report();
}
