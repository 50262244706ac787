/* An AIO context with completed events not yet read: its ring's head and
 * tail must be where they were after a restore, and the kernel must go on
 * completing at the tail (a new request lands at tail + 1). */
#include "harness.h"

#include <fcntl.h>
#include <linux/aio_abi.h>
#include <sys/syscall.h>

struct aio_ring {
	unsigned id, nr, head, tail, magic, compat_features, incompat_features, header_length;
	struct io_event io_events[];
};

int main(void)
{
	aio_context_t ctx = 0;
	struct iocb iocb = { 0 }, *iocbp = &iocb;
	struct io_event event;
	char buf[1];
	harness_init();
	if (syscall(__NR_io_setup, 64, &ctx) < 0)
		return 2;
	int fd = open("/dev/null", O_WRONLY);
	iocb.aio_fildes = fd;
	iocb.aio_buf = (unsigned long)buf;
	iocb.aio_nbytes = 1;
	iocb.aio_lio_opcode = IOCB_CMD_PWRITE;
	volatile struct aio_ring *ring = (void *)ctx;
	unsigned nr = ring->nr;
	for (unsigned i = 0; i < nr + 2; i++) {  /* the tail wraps; every other event read */
		syscall(__NR_io_submit, ctx, 1, &iocbp);
		if (i % 2)
			syscall(__NR_io_getevents, ctx, 0, 1, &event, NULL);
	}
	unsigned head = ring->head, tail = ring->tail;
	ready("head=%u tail=%u nr=%u", head, tail, nr);
	wait_for_check();

	expect(ring->head == head && ring->tail == tail && ring->nr == nr,
	       "ring %u/%u/%u, was %u/%u/%u", ring->head, ring->tail, ring->nr, head, tail, nr);
	expect(syscall(__NR_io_submit, ctx, 1, &iocbp) == 1, "a new request");
	expect(ring->tail == (tail + 1) % nr, "completed at the tail (%u)", ring->tail);
	long got = syscall(__NR_io_getevents, ctx, 1, 1, &event, NULL);
	expect(got == 1, "an event read (%ld)", got);
	return report();
}
