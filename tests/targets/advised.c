/* Memory with advice and of special kinds: one area per madvise() state
 * the kernel shows in VmFlags, a MAP_DROPPABLE area, and hugetlb memory
 * (private and shared) when the machine has huge pages. After the check
 * signal each area must show the same VmFlags, the hugetlb areas must hold
 * their data and sit on the same device (the kernel's hugetlbfs mount),
 * and a fork must still honour MADV_DONTFORK and MADV_WIPEONFORK.
 * Argument "huge" asks for the hugetlb areas (the test knows whether the
 * machine can give them). */
#include "harness.h"

#include <errno.h>
#include <stdint.h>
#include <sys/sysmacros.h>
#include <sys/mman.h>
#include <sys/wait.h>

#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif

#define AREA (4 * 4096)
#define HUGE (2UL << 20)

struct area {
	const char *what;
	char *start;
	int value;
	char flags[256];
};

static struct area areas[16];
static int nareas;

/* the VmFlags line of the VMA holding addr, minus "ac" (accounted): a
 * restored private area is accounted at creation whatever it was before */
static void vmflags_of(const void *addr, char *out, size_t size)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	unsigned long start = 0, end = 0, a = (unsigned long)addr;
	int inside = 0;
	out[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2 && strchr(line, '-') < strchr(line, ' '))
			inside = start <= a && a < end;
		else if (inside && !strncmp(line, "VmFlags:", 8)) {
			char *tok = strtok(line + 8, " \n");
			for (; tok; tok = strtok(NULL, " \n")) {
				if (!strcmp(tok, "ac"))
					continue;
				strncat(out, tok, size - strlen(out) - 2);
				strcat(out, " ");
			}
			break;
		}
	}
	fclose(f);
}

static char *add(const char *what, int flags, int advice, size_t size)
{
	char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
	expect(p != MAP_FAILED, "mmap for %s: %m", what);
	if (p == MAP_FAILED)
		exit(report());
	if (advice >= 0)
		expect(madvise(p, size, advice) == 0, "madvise for %s: %m", what);
	memset(p, nareas + 1, size);
	areas[nareas].value = nareas + 1;
	areas[nareas].what = what;
	areas[nareas].start = p;
	vmflags_of(p, areas[nareas].flags, sizeof(areas[nareas].flags));
	nareas++;
	return p;
}

static dev_t dev_of(const void *addr)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	unsigned long start, end;
	unsigned int major = 0, minor = 0;
	dev_t dev = (dev_t)-1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx %*s %*x %x:%x", &start, &end, &major, &minor) == 4 &&
		    start <= (unsigned long)addr && (unsigned long)addr < end) {
			dev = makedev(major, minor);
			break;
		}
	fclose(f);
	return dev;
}

static int filled_with(const char *p, size_t size, int value)
{
	for (size_t i = 0; i < size; i++)
		if (p[i] != (char)value)
			return 0;
	return 1;
}

int main(int argc, char **argv)
{
	harness_init();
	int huge = argc > 1 && !strcmp(argv[1], "huge");
	const int anon = MAP_PRIVATE | MAP_ANONYMOUS;
	char *dontfork = add("dontfork", anon, MADV_DONTFORK, AREA);
	add("locked, sequential", anon | MAP_LOCKED, MADV_SEQUENTIAL, AREA);
	add("noreserve, dontdump", anon | MAP_NORESERVE, MADV_DONTDUMP, AREA);
	add("random", anon, MADV_RANDOM, AREA);
	add("hugepage", anon, MADV_HUGEPAGE, AREA);
	add("nohugepage", anon, MADV_NOHUGEPAGE, AREA);
	add("mergeable", anon, MADV_MERGEABLE, AREA);
	char *wipe = add("wipeonfork", anon, MADV_WIPEONFORK, AREA);
	char *droppable = mmap(NULL, AREA, PROT_READ | PROT_WRITE, MAP_DROPPABLE | MAP_ANONYMOUS, -1, 0);
	if (droppable != MAP_FAILED) { /* Linux 6.11 and later */
		munmap(droppable, AREA);
		add("droppable", MAP_DROPPABLE | MAP_ANONYMOUS, -1, AREA);
	}
	char *huge_private = NULL, *huge_shared = NULL;
	dev_t private_dev = 0, shared_dev = 0;
	int private_value = 0, shared_value = 0;
	if (huge) {
		huge_private = add("hugetlb private", anon | MAP_HUGETLB, -1, 2 * HUGE);
		private_value = nareas;
		huge_shared = add("hugetlb shared", MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, HUGE);
		shared_value = nareas;
		/* half of the private area never touched: it stays unpopulated */
		madvise(huge_private + HUGE, HUGE, MADV_DONTNEED);
		private_dev = dev_of(huge_private);
		shared_dev = dev_of(huge_shared);
	}
	ready("areas=%d", nareas);
	wait_for_check();

	for (int i = 0; i < nareas; i++) {
		char now[256];
		vmflags_of(areas[i].start, now, sizeof(now));
		expect(!strcmp(now, areas[i].flags), "%s: VmFlags were \"%s\", now \"%s\"",
		       areas[i].what, areas[i].flags, now);
	}
	if (huge) {
		expect(filled_with(huge_private, HUGE, private_value) && filled_with(huge_private + HUGE, HUGE, 0),
		       "private hugetlb memory changed");
		expect(filled_with(huge_shared, HUGE, shared_value), "shared hugetlb memory changed");
		expect(dev_of(huge_private) == private_dev && dev_of(huge_shared) == shared_dev,
		       "hugetlb memory moved to another device");
	}
	/* the advice still acts: a child has no dontfork area, and a zeroed
	 * wipeonfork one; the shared hugetlb memory is still shared with it */
	pid_t child = fork();
	if (child == 0) {
		int ok = wipe[0] == 0 && msync(dontfork, AREA, MS_ASYNC) == -1 && errno == ENOMEM;
		if (huge_shared)
			huge_shared[0] = 42;
		_exit(ok ? 0 : 1);
	}
	int status;
	waitpid(child, &status, 0);
	expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "a child still got the dontfork area or the wipeonfork contents");
	expect(wipe[0] == 8, "wipeonfork wiped the parent"); /* the 8th area */
	if (huge_shared)
		expect(huge_shared[0] == 42, "shared hugetlb memory is no longer shared");
	return report();
}
