/* A process registered for private expedited membarrier() (as JIT runtimes
 * are): without the registration a restored one gets EPERM from the barrier. */
#include "harness.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>

int main(void)
{
	harness_init();
	if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0)) {
		perror("membarrier");
		return 2;
	}
	ready("");
	wait_for_check();
	errno = 0;
	expect(syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0,
	       "private expedited barrier: %s", strerror(errno));
	return report();
}
