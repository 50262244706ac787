/* Touches N MiB of anonymous memory with a known pattern, says "ready",
 * then sleeps until killed. Used by the dump/restore benchmarks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 16;
	size_t size = mib << 20;
	unsigned char *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	for (size_t i = 0; i < size; i += 4096)
		memset(p + i, (int)(i >> 12) | 1, 4096);
	printf("ready %p\n", (void *)p);
	fflush(stdout);
	for (;;)
		pause();
}
