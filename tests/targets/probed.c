/* Calls probed_function() and probed_other() (and libc's usleep) every
 * millisecond, so uprobes on them are hit. */
#include "harness.h"

volatile unsigned long calls;

__attribute__((noinline)) void probed_function(void)
{
	calls++;
	__asm__ volatile("" ::: "memory");
}

volatile unsigned long other_calls;

__attribute__((noinline)) void probed_other(void)
{
	other_calls++;
	__asm__ volatile("" ::: "memory");
}

int main(void)
{
	harness_init();
	ready("function=probed_function");
	while (!check_requested) {
		probed_function();
		probed_other();
		usleep(1000);
	}
	expect(calls > 0 && other_calls == calls, "probed functions ran %lu/%lu times", calls,
	       other_calls);
	return report();
}
