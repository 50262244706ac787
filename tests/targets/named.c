/* Anonymous mappings with names (prctl PR_SET_VMA_ANON_NAME): after a
 * restore, maps shows each name on its own range, and the data is there.
 *   hiber-one     a private mapping of 4 pages
 *   hiber-two     the middle page of a 3-page mapping (split in three VMAs)
 * usage: named [shared]: with "shared", a named shared anonymous mapping
 * too, which hiber refuses to dump. */
#include "harness.h"
#include <sys/mman.h>
#include <sys/prctl.h>

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

static char *one, *two, *shared;
static int names = 1;  /* 0: a kernel without CONFIG_ANON_VMA_NAME */

static int named(void *start, size_t len, const char *name)
{
	return prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)start, len,
		     (unsigned long)name);
}

static int maps_line(const void *start, const void *end, const char *name)
{
	char want[256], line[512];
	snprintf(want, sizeof(want), "%lx-%lx ", (unsigned long)start, (unsigned long)end);
	FILE *maps = fopen("/proc/self/maps", "r");
	int found = 0;
	while (fgets(line, sizeof(line), maps))
		if (!strncmp(line, want, strlen(want)))
			found = strstr(line, name) != NULL;
	fclose(maps);
	return found;
}

static void check(void)
{
	long page = sysconf(_SC_PAGESIZE);
	for (int i = 0; i < 4 * page; i++)
		expect(one[i] == (char)(i * 7), "hiber-one: byte %d", i);
	expect(two[page] == 'x', "hiber-two: its data");
	if (!names)
		return;
	expect(maps_line(one, one + 4 * page, "[anon:hiber-one]"), "hiber-one is not named");
	expect(maps_line(two + page, two + 2 * page, "[anon:hiber-two]"),
	       "hiber-two is not named");
	expect(maps_line(two, two + page, "rw-p 00000000 00:00 0 \n"),
	       "the page before hiber-two got a name");
}

int main(int argc, char **argv)
{
	harness_init();
	long page = sysconf(_SC_PAGESIZE);
	one = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	two = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (int i = 0; i < 4 * page; i++)
		one[i] = (char)(i * 7);
	two[page] = 'x';
	if (named(one, 4 * page, "hiber-one") || named(two + page, page, "hiber-two"))
		names = 0;
	if (argc > 1) {
		shared = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		named(shared, page, "hiber-shared");
	}
	check();
	ready("names=%d", names);
	wait_for_check();
	check();
	return report();
}
