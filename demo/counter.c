/* The demo's sample process: counts, one line every 200 ms, with the time
 * it has been counting, into the file given as its argument. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	FILE *out = fopen(argc > 1 ? argv[1] : "counter.log", "a");
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (unsigned long n = 1;; n++) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		fprintf(out, "count %lu  (pid %d, %.1f s of counting)\n", n, getpid(),
			(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9);
		fflush(out);
		usleep(200000);
	}
}
