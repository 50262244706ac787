/* Locked and sealed memory; after restore each area checks its VmFlags,
 * its resident size and its contents:
 *   locked   16 KiB mlock()ed: "lo", all of it resident
 *   onfault  256 KiB mlock2(MLOCK_ONFAULT)ed, 2 pages touched: "lo lf", and
 *            only those 2 pages resident (a restore must not fault in the rest)
 *   sealed   8 KiB mseal()ed read-only: "sl", mprotect refused
 * and mlockall(MCL_FUTURE[|MCL_ONFAULT]): a new mapping after restore is
 * locked ("lo", with "lf" for onfault).
 * Usage: mlock future|onfault */
#include "harness.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define PAGE 4096
#ifndef SYS_mseal
#define SYS_mseal 462
#endif

static int resident_pages(void *addr, size_t len)
{
	unsigned char v[256];
	int n = 0;
	if (mincore(addr, len, v))
		return -1;
	for (size_t i = 0; i < len / PAGE; i++)
		n += v[i] & 1;
	return n;
}

int main(int argc, char **argv)
{
	harness_init();
	int onfault = argc > 1 && !strcmp(argv[1], "onfault");
	unsigned char *locked = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *lazy = mmap(NULL, 64 * PAGE, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *sealed = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(locked, 0x11, 4 * PAGE);
	memset(sealed, 0x33, 2 * PAGE);
	int bad = mlock(locked, 4 * PAGE) != 0;
	bad |= syscall(SYS_mlock2, lazy, 64 * PAGE, MLOCK_ONFAULT) != 0;
	lazy[0] = 0x22;
	lazy[40 * PAGE] = 0x23;
	bad |= mprotect(sealed, 2 * PAGE, PROT_READ) != 0;
	bad |= syscall(SYS_mseal, sealed, 2 * PAGE, 0) != 0;
	bad |= mlockall(MCL_FUTURE | (onfault ? MCL_ONFAULT : 0)) != 0;
	if (bad) {
		printf("setup failed: %s\n", strerror(errno));
		return 2;
	}
	ready("locked=%p lazy=%p sealed=%p", locked, lazy, sealed);
	wait_for_check();

	expect(vmflag_of(locked, "lo") && !vmflag_of(locked, "lf"), "locked area lost its lock");
	expect(resident_pages(locked, 4 * PAGE) == 4, "locked area not resident");
	expect(locked[0] == 0x11 && locked[4 * PAGE - 1] == 0x11, "locked area contents");
	expect(vmflag_of(lazy, "lo") && vmflag_of(lazy, "lf"), "lock-on-fault area lost its flags");
	expect(resident_pages(lazy, 64 * PAGE) == 2, "lock-on-fault area has %d pages resident",
	       resident_pages(lazy, 64 * PAGE));
	expect(lazy[0] == 0x22 && lazy[40 * PAGE] == 0x23, "lock-on-fault area contents");
	expect(vmflag_of(sealed, "sl"), "sealed area lost its seal");
	expect(mprotect(sealed, 2 * PAGE, PROT_READ | PROT_WRITE) == -1 && errno == EPERM,
	       "sealed area can be mprotect()ed");
	expect(sealed[0] == 0x33, "sealed area contents");
	unsigned char *fresh = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	expect(vmflag_of(fresh, "lo"), "mlockall(MCL_FUTURE) lost");
	expect(vmflag_of(fresh, "lf") == onfault, "MCL_ONFAULT %s", onfault ? "lost" : "appeared");
	return report();
}
