/* A small target with one optional extra: "socket" (a corked UDP one),
 * "userfaultfd", "io_uring" (a mapped ring), "exit42" (exit code 42 after a
 * passing check) or nothing. */
#include "harness.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/io_uring.h>

static unsigned long counter;

int main(int argc, char **argv)
{
	int sv[2] = { -1, -1 };
	harness_init();
	if (argc > 1 && !strcmp(argv[1], "socket")) {
		int one = 1;
		sv[0] = socket(AF_INET, SOCK_DGRAM, 0);
		/* corked (UDP_CORK): refused, as by criu */
		setsockopt(sv[0], 17 /* SOL_UDP */, 1 /* UDP_CORK */, &one, sizeof(one));
	}
	if (argc > 1 && !strcmp(argv[1], "userfaultfd"))
		sv[0] = syscall(SYS_userfaultfd, 0);
	if (argc > 1 && !strcmp(argv[1], "io_uring")) {
		struct io_uring_params params = { 0 };
		sv[0] = syscall(__NR_io_uring_setup, 4, &params);
		mmap(NULL, params.sq_off.array + params.sq_entries * sizeof(unsigned),
		     PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, sv[0], IORING_OFF_SQ_RING);
	}
	counter = 12345;
	ready("extra=%s fd=%d", argc > 1 ? argv[1] : "none", sv[0]);
	wait_for_check();
	expect(counter == 12345, "counter changed");
	if (argc > 1 && !strcmp(argv[1], "exit42")) {
		report();
		return 42;
	}
	return report();
}
