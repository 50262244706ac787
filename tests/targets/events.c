/* Event fds: after a restore each has its counter, its mode and its flags.
 *   fd A  semaphore, O_NONBLOCK, count 3: three reads of 1, then EAGAIN
 *   fd B  count 0x123456789, close-on-exec, and fd C a dup of it: one open
 *         file, so what a read of B takes, C no longer has */
#include "harness.h"
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/eventfd.h>

int main(void)
{
	harness_init();
	int a = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
	int b = eventfd(0, EFD_CLOEXEC);
	uint64_t add = 0x123456789ULL, got;
	if (write(b, &add, 8) != 8)
		return 2;
	int c = dup(b);
	ready("a=%d b=%d c=%d", a, b, c);
	wait_for_check();
	expect(fcntl(a, F_GETFL) & O_NONBLOCK, "A lost O_NONBLOCK");
	expect(fcntl(b, F_GETFD) & FD_CLOEXEC, "B lost close-on-exec");
	expect(!(fcntl(c, F_GETFD) & FD_CLOEXEC), "C got close-on-exec");
	for (int i = 0; i < 3; i++)
		expect(read(a, &got, 8) == 8 && got == 1, "A read %d: not a semaphore's 1", i);
	expect(read(a, &got, 8) < 0 && errno == EAGAIN, "A: a fourth read did not fail");
	expect(read(b, &got, 8) == 8 && got == add, "B: count %llx", (unsigned long long)got);
	fcntl(c, F_SETFL, O_NONBLOCK);  /* the same open file: B is non-blocking too now */
	expect(read(c, &got, 8) < 0 && errno == EAGAIN, "C still had a count: not B's file");
	return report();
}
