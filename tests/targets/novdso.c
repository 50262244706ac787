/* A process that unmapped its vdso and vvar (as a sandbox or an old
 * runtime may): after the check signal it must still have none, since a
 * restored process must not gain mappings it did not have. From the
 * munmap on, nothing may call into the vdso: glibc's time functions would
 * jump into the hole, so only plain syscalls are used. */
#include "harness.h"

#include <sys/syscall.h>

static int kernel_areas(unsigned long *starts, unsigned long *ends, int max)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	int n = 0;
	while (fgets(line, sizeof(line), f) && n < max)
		if (strstr(line, "[vdso]") || strstr(line, "[vvar]") || strstr(line, "[vvar_vclock]"))
			if (sscanf(line, "%lx-%lx", &starts[n], &ends[n]) == 2)
				n++;
	fclose(f);
	return n;
}

int main(void)
{
	harness_init();
	unsigned long starts[4], ends[4];
	int n = kernel_areas(starts, ends, 4);
	expect(n >= 2, "found %d vdso/vvar areas before unmapping them", n);
	for (int i = 0; i < n; i++)
		expect(syscall(SYS_munmap, starts[i], ends[i] - starts[i]) == 0, "munmap: %m");
	ready("areas=%d", n);
	wait_for_check();
	n = kernel_areas(starts, ends, 4);
	expect(n == 0, "%d vdso/vvar areas came back", n);
	return report();
}
