/* A function that starts with a 5-byte nop, called in a loop: Linux 6.18
 * optimizes a uprobe there into a call to [uprobes-trampoline], which hiber
 * refuses to dump (tests/test_uprobes.py). */
#include "harness.h"

long site_nop5(long x);
__asm__(".text\n.globl site_nop5\n.type site_nop5,@function\nsite_nop5:\n"
	"  .byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n  lea 5(%rdi), %rax\n  ret\n");

static volatile int go = 1;

int main(void)
{
	long total = 0, rounds = 0;
	harness_init();
	ready("started=1");
	while (go && !check_requested) {
		total += site_nop5(rounds++);
		usleep(1000);
	}
	expect(total == rounds * (rounds - 1) / 2 + 5 * rounds, "site_nop5 miscomputed");
	return report();
}
