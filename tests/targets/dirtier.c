/* Memory that changes between incremental dumps. The target fills an area
 * of MIB MiB (argv[1], default 16), a page at a time, with a tag of the page
 * and its generation. Each SIGUSR1 is a round r: the pages whose number is
 * r mod 100 are written again (1% of them), one page that earlier images
 * hold is dropped (MADV_DONTNEED: it must read as zero afterwards, not as
 * the old copy), and a new area of 4 pages appears; "ROUND r" follows on
 * stdout. On the check signal every page must hold what the model says. */
#include "harness.h"

#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096
#define MAX_ROUNDS 8

static volatile sig_atomic_t round_requested;
static unsigned char *area;
static uint32_t *generation; /* per page; 0 = dropped */
static size_t npages;
static unsigned char *extra[MAX_ROUNDS + 1];
static int rounds;

static void on_usr1(int sig)
{
	(void)sig;
	round_requested = 1;
}

static void fill(unsigned char *page, size_t number, uint32_t gen)
{
	uint64_t tag = ((uint64_t)number << 32) | gen;
	for (size_t off = 0; off < PAGE; off += sizeof(tag))
		memcpy(page + off, &tag, sizeof(tag));
}

static int holds(const unsigned char *page, size_t number, uint32_t gen)
{
	if (gen == 0) {
		for (size_t off = 0; off < PAGE; off++)
			if (page[off])
				return 0;
		return 1;
	}
	uint64_t tag = ((uint64_t)number << 32) | gen;
	for (size_t off = 0; off < PAGE; off += sizeof(tag))
		if (memcmp(page + off, &tag, sizeof(tag)))
			return 0;
	return 1;
}

static void one_round(void)
{
	rounds++;
	for (size_t i = rounds % 100; i < npages; i += 100) {
		generation[i]++;
		fill(area + i * PAGE, i, generation[i]);
	}
	size_t dropped = (rounds * 7 + 3) % npages;
	if (dropped % 100 == (size_t)rounds % 100)
		dropped = (dropped + 1) % npages;
	madvise(area + dropped * PAGE, PAGE, MADV_DONTNEED);
	generation[dropped] = 0;
	extra[rounds] = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (int p = 0; p < 4; p++)
		fill(extra[rounds] + p * PAGE, 1000000 + rounds * 4 + p, rounds);
	printf("ROUND %d\n", rounds);
	fflush(stdout);
}

/* every page against the model; with ``say``, each difference is a failure */
static size_t verify(int say)
{
	size_t bad = 0, first = 0;
	for (size_t i = 0; i < npages; i++)
		if (!holds(area + i * PAGE, i, generation[i]) && !bad++)
			first = i;
	if (say)
		expect(bad == 0, "%zu page(s) differ from the model, the first is %zu", bad, first);
	for (int r = 1; r <= rounds; r++)
		for (int p = 0; p < 4; p++)
			if (!holds(extra[r] + p * PAGE, 1000000 + r * 4 + p, r)) {
				bad++;
				if (say)
					expect(0, "page %d of round %d's area differs", p, r);
			}
	return bad;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 16;
	harness_init();
	signal(SIGUSR1, on_usr1);
	npages = mib * 256;
	area = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		    -1, 0);
	generation = calloc(npages, sizeof(*generation));
	if (area == MAP_FAILED || !generation)
		return 2;
	for (size_t i = 0; i < npages; i++) {
		generation[i] = 1;
		fill(area + i * PAGE, i, 1);
	}
	ready("area=%p pages=%zu", area, npages);
	while (!check_requested) {
		if (round_requested && rounds < MAX_ROUNDS) {
			round_requested = 0;
			one_round();
		}
		usleep(1000);
	}
	/* memory that moves (mremap) and a child forked now: under a lazy
	 * restore the pages may still be arriving, and must follow both */
	if (rounds >= 1) {
		void *to = mmap(NULL, 4 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		extra[1] = mremap(extra[1], 4 * PAGE, 4 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, to);
		expect(extra[1] != MAP_FAILED, "mremap of round 1's area failed");
	}
	pid_t kid = fork();
	if (kid == 0)
		_exit(verify(0) ? 1 : 0);
	int status = -1;
	waitpid(kid, &status, 0);
	expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "a child forked after the restore saw other memory (status %d)", status);
	verify(1);
	return report();
}
