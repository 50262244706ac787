/* 256 MiB of memory filled with a pseudo-random pattern; its checksum must
 * be the same after restore. */
#include "harness.h"

#include <stdint.h>
#include <sys/mman.h>

static uint64_t checksum(const uint64_t *p, size_t words)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < words; i++)
		sum = sum * 31 + p[i];
	return sum;
}

int main(void)
{
	size_t size = 256u << 20, words = size / 8;
	harness_init();
	uint64_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t x = 88172645463325252ULL;
	for (size_t i = 0; i < words; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = x;
	}
	uint64_t before = checksum(p, words);
	ready("sum=%llx", (unsigned long long)before);
	wait_for_check();
	expect(checksum(p, words) == before, "checksum changed");
	return report();
}
