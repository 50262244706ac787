/* Private memory shared copy-on-write after fork: the parent fills an area,
 * forks a child, and the child forks a grandchild. The child then writes
 * one page (that page is its own), drops another (MADV_DONTNEED: reads as
 * zero); all else stays shared by the three, as /proc/PID/pagemap shows:
 * the same frame for the same page. The same holds for the pages of a
 * private file mapping the parent wrote before the fork. (The grandchild's copies of those two
 * pages come back as its own: it is restored from its parent's memory, as
 * in CRIU.) After the check signal (passed down)
 * the sharing and the contents must be as before. */
#include "harness.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGES 64
#define PAGE 4096

static unsigned char *area, *filed;

static uint64_t frame_at(pid_t pid, const void *base, int page)
{
	char path[64];
	uint64_t entry = 0;
	snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
	int fd = open(path, O_RDONLY);
	pread(fd, &entry, sizeof(entry), ((uintptr_t)base / PAGE + page) * sizeof(entry));
	close(fd);
	return entry & ((1ULL << 55) - 1); /* the frame number, needs root */
}

static uint64_t frame_of(pid_t pid, int page)
{
	return frame_at(pid, area, page);
}

/* the private file mapping: pages 0-3 written by the parent before the
 * fork (shared copies), page 1 written again by the child (its own) */
static int file_sharing_wrong(pid_t parent, pid_t child)
{
	for (int i = 0; i < 4; i++) {
		uint64_t p = frame_at(parent, filed, i), c = frame_at(child, filed, i);
		if (!p || (i == 1 ? p == c : p != c))
			return i + 1;
	}
	return 0;
}

static int contents_ok(void)
{
	for (int i = 0; i < PAGES; i++)
		for (int j = 0; j < PAGE; j++)
			if (area[i * PAGE + j] != i + 1)
				return 0;
	return 1;
}

/* 0: the page is shared as expected; the index of the first that is not */
static int sharing_wrong(pid_t parent, pid_t child, pid_t grandchild)
{
	for (int i = 0; i < PAGES; i++) {
		uint64_t p = frame_of(parent, i), c = frame_of(child, i), g = frame_of(grandchild, i);
		int mine = i == 1 || i == 2; /* written or dropped by the child */
		if (!p || (mine ? p == c : p != c))
			return i + 1;
		if (!mine && p != g)
			return i + 1;
	}
	return 0;
}

static void member(void)
{
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	harness_init();
	area = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (int i = 0; i < PAGES; i++)
		memset(area + i * PAGE, i + 1, PAGE);
	int data = open(argc > 1 ? argv[1] : "cow.data", O_RDWR | O_CREAT | O_TRUNC, 0644);
	ftruncate(data, 8 * PAGE);
	filed = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, data, 0);
	close(data);
	for (int i = 0; i < 4; i++)
		memset(filed + i * PAGE, 0x50 + i, PAGE);
	int sync[2];
	pipe(sync);
	pid_t child = fork();
	if (child == 0) {
		pid_t grandchild = fork();
		if (grandchild == 0)
			member();
		memset(area + PAGE, 0x77, PAGE);
		memset(filed + PAGE, 0x78, PAGE);
		madvise(area + 2 * PAGE, PAGE, MADV_DONTNEED);
		write(sync[1], &grandchild, sizeof(grandchild));
		member();
	}
	pid_t grandchild;
	read(sync[0], &grandchild, sizeof(grandchild));
	int before = sharing_wrong(getpid(), child, grandchild);
	int file_before = file_sharing_wrong(getpid(), child);
	ready("child=%d grandchild=%d wrong=%d", child, grandchild, before);
	wait_for_check();
	expect(!before, "page %d was not shared as expected before the dump", before - 1);
	expect(!file_before, "file page %d was not shared as expected before the dump",
	       file_before - 1);
	int file_after = file_sharing_wrong(getpid(), child);
	expect(!file_after, "file page %d is not shared as before", file_after - 1);
	expect(filed[0] == 0x50 && filed[PAGE] == 0x51 && filed[4 * PAGE] == 0,
	       "the parent's private file pages changed");
	int after = sharing_wrong(getpid(), child, grandchild);
	expect(!after, "page %d is not shared as before", after - 1);
	expect(contents_ok(), "the parent's memory changed");
	/* the child's view, read through /proc/PID/mem */
	char path[64];
	unsigned char page[PAGE];
	snprintf(path, sizeof(path), "/proc/%d/mem", child);
	int mem = open(path, O_RDONLY);
	pread(mem, page, PAGE, (uintptr_t)area + PAGE);
	expect(page[0] == 0x77 && page[PAGE - 1] == 0x77, "the child's own page changed");
	pread(mem, page, PAGE, (uintptr_t)area + 2 * PAGE);
	expect(page[0] == 0 && page[PAGE - 1] == 0, "the child's dropped page came back");
	close(mem);
	kill(grandchild, SIGKILL);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return report();
}
