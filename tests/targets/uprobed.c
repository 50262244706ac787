/* Probe sites of several instruction kinds, run in a loop and checked, for
 * uprobes in the program's own text (tests/test_uprobes.py). Each site_*
 * function starts with the instruction the tests probe:
 *   site_nop, site_push, site_call: the kernel emulates them on a hit;
 *   site_store, site_load, site_riprel, site_indirect_call: single-stepped
 *   out of line in the [uprobes] area, with their rip-relative and
 *   return-address fixups.
 * Every round also calls libc's a64l and l64a, which the libc probes take
 * (nothing else on the machine calls them, so their counts are this
 * process's own).
 * The program uses int3 itself, twice a round: one compiled into
 * site_own_int3, one in code it writes at run time into a private mapping of
 * the file named by argv[1] (a tiny JIT). Its SIGTRAP handler counts them.
 * The check verifies every result of every round, and the trap count. */
#include "harness.h"
#include <fcntl.h>
#include <sys/mman.h>

long site_nop(long x);                                  /* x + 1 */
long site_push(long x);                                 /* x + 2 */
long site_call(long x);                                 /* 2x, via a direct call */
void site_store(long x, long *to);
long site_load(const long *from);
long site_riprel(void);                                 /* riprel_cell */
long site_indirect_call(long x, long (*f)(long));       /* f(x) */
long site_own_int3(long x);                             /* x + 7, after an int3 */
long tripled(long x);

volatile long riprel_cell;

__asm__(".text\n"
	".globl site_nop\n.type site_nop,@function\n"
	"site_nop:\n\tnop\n\tlea 1(%rdi), %rax\n\tret\n"
	".globl site_push\n.type site_push,@function\n"
	"site_push:\n\tpush %rdi\n\tpop %rax\n\tadd $2, %rax\n\tret\n"
	".globl site_call\n.type site_call,@function\n"
	"site_call:\n\tcall doubled\n\tret\n"
	"doubled:\n\tlea (%rdi,%rdi), %rax\n\tret\n"
	".globl site_store\n.type site_store,@function\n"
	"site_store:\n\tmov %rdi, (%rsi)\n\tret\n"
	".globl site_load\n.type site_load,@function\n"
	"site_load:\n\tmov (%rdi), %rax\n\tret\n"
	".globl site_riprel\n.type site_riprel,@function\n"
	"site_riprel:\n\tmov riprel_cell(%rip), %rax\n\tret\n"
	".globl site_indirect_call\n.type site_indirect_call,@function\n"
	"site_indirect_call:\n\tcall *%rsi\n\tret\n"
	".globl tripled\n.type tripled,@function\n"
	"tripled:\n\tlea (%rdi,%rdi,2), %rax\n\tret\n"
	".globl site_own_int3\n.type site_own_int3,@function\n"
	"site_own_int3:\n\tint3\n\tlea 7(%rdi), %rax\n\tret\n");

/* int3; lea 11(%rdi), %rax; ret */
static const unsigned char jit_code[] = { 0xcc, 0x48, 0x8d, 0x47, 0x0b, 0xc3 };

static volatile unsigned long traps;

static void on_sigtrap(int sig)
{
	(void)sig;
	traps++;  /* rip is past the int3 already: returning carries on */
}

static long (*make_jit(const char *path))(long)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 4096) != 0) {
		perror(path);
		exit(2);
	}
	unsigned char *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	if (code == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	memcpy(code, jit_code, sizeof(jit_code));
	if (mprotect(code, 4096, PROT_READ | PROT_EXEC) != 0) {
		perror("mprotect");
		exit(2);
	}
	return (long (*)(long))code;
}

enum { NOP, PUSH, CALL, STORE, LOAD, RIPREL, INDIRECT, OWN_INT3, JIT, LIBC, SITES };
static const char *const site_names[SITES] = {
	"nop", "push", "call", "store", "load", "riprel", "indirect call", "own int3", "jit",
	"a64l/l64a",
};
static unsigned long wrong[SITES];

static void round_of_calls(long x, long (*jit)(long))
{
	long cell = 0;

	wrong[NOP] += site_nop(x) != x + 1;
	wrong[PUSH] += site_push(x) != x + 2;
	wrong[CALL] += site_call(x) != 2 * x;
	site_store(5 * x, &cell);
	wrong[STORE] += cell != 5 * x;
	cell = 9 * x;
	wrong[LOAD] += site_load(&cell) != 9 * x;
	riprel_cell = x ^ 0x5eed;
	wrong[RIPREL] += site_riprel() != (x ^ 0x5eed);
	wrong[INDIRECT] += site_indirect_call(x, tripled) != 3 * x;
	wrong[OWN_INT3] += site_own_int3(x) != x + 7;
	wrong[JIT] += jit(x) != x + 11;
	wrong[LIBC] += a64l(l64a(x)) != x;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: uprobed JIT-FILE\n");
		return 2;
	}
	harness_init();
	struct sigaction sa = { .sa_handler = on_sigtrap };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTRAP, &sa, NULL);
	long (*jit)(long) = make_jit(argv[1]);

	unsigned long rounds = 0;
	round_of_calls(0, jit);  /* one round before READY: every site is paged in */
	rounds++;
	ready("jit=%p", (void *)jit);
	while (!check_requested) {
		round_of_calls(rounds, jit);
		rounds++;
		usleep(1000);
	}
	for (int i = 0; i < SITES; i++)
		expect(wrong[i] == 0, "site %s: %lu wrong results in %lu rounds", site_names[i],
		       wrong[i], rounds);
	expect(traps == 2 * rounds, "%lu SIGTRAPs for %lu rounds of 2 int3", traps, rounds);
	return report();
}
