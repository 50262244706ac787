/* Calls probed_function() every millisecond, so a uprobe on it is hit. */
#include "harness.h"

volatile unsigned long calls;

__attribute__((noinline)) void probed_function(void)
{
	calls++;
	__asm__ volatile("" ::: "memory");
}

int main(void)
{
	harness_init();
	ready("function=probed_function");
	while (!check_requested) {
		probed_function();
		usleep(1000);
	}
	expect(calls > 0, "probed_function never ran");
	return report();
}
