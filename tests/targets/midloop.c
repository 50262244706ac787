/* Two threads (the main one and a worker) run a loop that makes no syscall
 * and keeps all of its state in registers: general registers, xmm0-2 and
 * ymm3-5, and two carry chains in the flags, CF (adcx) and OF (adox), that
 * run from one iteration into the next: apart from adcx and adox the loop
 * only uses instructions that leave the flags alone (mulx, rorx, lea, mov,
 * vector instructions, jrcxz; pause, spread through the loop, slows it so
 * that model() below has fewer iterations to redo). A dump stops each thread at whatever
 * instruction it is on; if any register, flag included, comes back
 * different, the sums go wrong. The loop ends when the check signal has
 * come; each thread's registers are then compared with the same
 * computation done in C for the same number of iterations.
 *
 * READY gives the loop's address range (the tests look for the dumped
 * instruction pointers in it) and is written from inside the main thread's
 * asm, once both threads are in the loop. */
#include "harness.h"

#include <cpuid.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>

#define MULTIPLIER 6364136223846793005ULL
#define INCREMENT 1442695040888963407ULL

struct loop_state {
	uint64_t a, b, s, t, c, d, count;  /*   0 .. 48 */
	uint64_t cf, of;                    /*  56, 64 */
	const volatile sig_atomic_t *stop;  /*  72 */
	uint64_t x0[2], x2[2];              /*  80, 96 */
	uint64_t y3[4], y5[4];              /* 112, 144 */
	const char *announce;               /* 176 */
	uint64_t announce_len;              /* 184 */
	uint64_t looping;                   /* 192: set on the way in */
};

extern char midloop_top[], midloop_end[];

static __attribute__((noinline, noclone)) void run_loop(struct loop_state *st)
{
	__asm__ volatile(
		"movq $1, 192(%%rsi)\n"
		"mov 184(%%rsi), %%rdx\n test %%rdx, %%rdx\n jz 1f\n"
		"push %%rsi\n mov $1, %%eax\n mov $1, %%edi\n mov 176(%%rsi), %%rsi\n syscall\n"
		"pop %%rsi\n"
		"1:\n"
		"mov 0(%%rsi), %%r8\n mov 8(%%rsi), %%r9\n mov 16(%%rsi), %%r10\n"
		"mov 24(%%rsi), %%r11\n mov 32(%%rsi), %%r12\n mov 40(%%rsi), %%r13\n"
		"mov 48(%%rsi), %%rdi\n"
		"movabs $" "6364136223846793005" ", %%r14\n movabs $" "1442695040888963407" ", %%r15\n"
		"vmovdqu 80(%%rsi), %%xmm0\n vmovdqu 96(%%rsi), %%xmm2\n"
		"vmovdqu 112(%%rsi), %%ymm3\n vmovdqu 144(%%rsi), %%ymm5\n"
		"xor %%eax, %%eax\n"   /* CF = OF = 0 */
		"cmpq $0, 56(%%rsi)\n je 2f\n stc\n 2:\n"  /* CF as given; OF stays 0 */
		".globl midloop_top\n midloop_top:\n"
		"mov 72(%%rsi), %%rax\n mov (%%rax), %%ecx\n jrcxz 3f\n jmp midloop_end\n"
		"3:\n"
		"mov %%r8, %%rdx\n mulx %%r14, %%r8, %%rbx\n pause\n"  /* rbx:r8 = a * M */
		"lea (%%r8,%%r15), %%r8\n"                       /* a = low + C */
		"rorx $13, %%r8, %%rax\n lea (%%r9,%%rax), %%r9\n"  /* b += ror(a, 13) */
		"adcx %%r9, %%r10\n pause\n"                    /* s += b + CF */
		"adox %%rbx, %%r11\n"                            /* t += high + OF */
		"vmovq %%r8, %%xmm1\n vpinsrq $1, %%r9, %%xmm1, %%xmm1\n"  /* {a, b} */
		"vpaddq %%xmm1, %%xmm0, %%xmm0\n"                /* x0 += {a, b} */
		"vpshufd $0x4e, %%xmm2, %%xmm2\n vpxor %%xmm0, %%xmm2, %%xmm2\n"  /* x2 = swap(x2) ^ x0 */
		"vinserti128 $1, %%xmm0, %%ymm1, %%ymm4\n pause\n"  /* {a, b, x0} */
		"vpaddq %%ymm4, %%ymm3, %%ymm3\n"                /* y3 += that */
		"vpxor %%ymm3, %%ymm5, %%ymm5\n vpermq $0x39, %%ymm5, %%ymm5\n"  /* y5 = rot(y5 ^ y3) */
		"vmovq %%xmm2, %%rax\n lea (%%r12,%%rax,8), %%r12\n"  /* c += 8 * x2[0] */
		"rorx $7, %%r12, %%rax\n lea 1(%%r13,%%rax), %%r13\n"  /* d += ror(c, 7) + 1 */
		"lea 1(%%rdi), %%rdi\n pause\n"
		"jmp midloop_top\n"
		".globl midloop_end\n midloop_end:\n"
		"setc %%al\n movzbl %%al, %%eax\n mov %%rax, 56(%%rsi)\n"
		"seto %%al\n movzbl %%al, %%eax\n mov %%rax, 64(%%rsi)\n"
		"mov %%r8, 0(%%rsi)\n mov %%r9, 8(%%rsi)\n mov %%r10, 16(%%rsi)\n"
		"mov %%r11, 24(%%rsi)\n mov %%r12, 32(%%rsi)\n mov %%r13, 40(%%rsi)\n"
		"mov %%rdi, 48(%%rsi)\n"
		"vmovdqu %%xmm0, 80(%%rsi)\n vmovdqu %%xmm2, 96(%%rsi)\n"
		"vmovdqu %%ymm3, 112(%%rsi)\n vmovdqu %%ymm5, 144(%%rsi)\n"
		"vzeroupper\n"
		:
		: "S"(st)
		: "rax", "rbx", "rcx", "rdx", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
		  "r15", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "memory", "cc");
}

static uint64_t ror(uint64_t x, int n) { return x >> n | x << (64 - n); }

/* The same computation in C. */
static __attribute__((optimize("O2"))) void model(struct loop_state *m, uint64_t iterations)
{
	for (uint64_t n = 0; n < iterations; n++) {
		unsigned __int128 product = (unsigned __int128)m->a * MULTIPLIER;
		uint64_t high = product >> 64;
		m->a = (uint64_t)product + INCREMENT;
		m->b += ror(m->a, 13);
		unsigned __int128 sum = (unsigned __int128)m->s + m->b + m->cf;
		m->s = sum;
		m->cf = sum >> 64;
		sum = (unsigned __int128)m->t + high + m->of;
		m->t = sum;
		m->of = sum >> 64;
		m->x0[0] += m->a;
		m->x0[1] += m->b;
		uint64_t low = m->x2[0];
		m->x2[0] = m->x2[1] ^ m->x0[0];
		m->x2[1] = low ^ m->x0[1];
		uint64_t y4[4] = { m->a, m->b, m->x0[0], m->x0[1] }, y5[4];
		for (int k = 0; k < 4; k++) {
			m->y3[k] += y4[k];
			y5[k] = m->y5[k] ^ m->y3[k];
		}
		for (int k = 0; k < 4; k++)
			m->y5[k] = y5[(k + 1) % 4];
		m->c += 8 * m->x2[0];
		m->d += ror(m->c, 7) + 1;
		m->count++;
	}
}

static void seed(struct loop_state *st, uint64_t n)
{
	memset(st, 0, sizeof(*st));
	uint64_t *words = &st->a;
	for (int i = 0; i < 6; i++)
		words[i] = 0x9e3779b97f4a7c15ULL * (n * 16 + i + 1);
	st->cf = n & 1;
	for (int i = 0; i < 2; i++) {
		st->x0[i] = 0x0123456789abcdefULL ^ (n << 8 | i);
		st->x2[i] = 0xfedcba9876543210ULL ^ (n << 8 | i);
	}
	for (int i = 0; i < 4; i++) {
		st->y3[i] = 0x1111111111111111ULL * (i + 1) + n;
		st->y5[i] = 0x0f0f0f0f0f0f0f0fULL * (i + 3) - n;
	}
	st->stop = &check_requested;
}

static void compare(struct loop_state *ran, uint64_t n, const char *who)
{
	struct loop_state expected;
	seed(&expected, n);
	model(&expected, ran->count);
	expect(ran->count > 0, "%s: the loop never ran", who);
	expect(!memcmp(&expected, ran, offsetof(struct loop_state, stop)),
	       "%s: general registers or flags differ after %lu iterations: a %lx/%lx b %lx/%lx "
	       "s %lx/%lx t %lx/%lx c %lx/%lx d %lx/%lx cf %lu/%lu of %lu/%lu", who,
	       (unsigned long)ran->count, (long)ran->a, (long)expected.a, (long)ran->b,
	       (long)expected.b, (long)ran->s, (long)expected.s, (long)ran->t, (long)expected.t,
	       (long)ran->c, (long)expected.c, (long)ran->d, (long)expected.d,
	       (unsigned long)ran->cf, (unsigned long)expected.cf, (unsigned long)ran->of,
	       (unsigned long)expected.of);
	expect(!memcmp(expected.x0, ran->x0, sizeof(ran->x0) + sizeof(ran->x2)),
	       "%s: xmm0/xmm2 differ", who);
	expect(!memcmp(expected.y3, ran->y3, sizeof(ran->y3) + sizeof(ran->y5)),
	       "%s: ymm3/ymm5 differ", who);
	printf("%s: %lu iterations\n", who, (unsigned long)ran->count);
}

static struct loop_state states[2];
static pid_t worker_tid;

static void *worker(void *arg)
{
	(void)arg;
	__atomic_store_n(&worker_tid, (pid_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
	run_loop(&states[1]);
	return NULL;
}

static int cpu_has_what_the_loop_needs(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return 0;
	return (b & bit_AVX2) && (b & bit_BMI2) && (b & bit_ADX);
}

int main(void)
{
	harness_init();
	if (!cpu_has_what_the_loop_needs()) {
		ready("supported=0");
		wait_for_check();
		return report();
	}
	seed(&states[0], 0);
	seed(&states[1], 1);
	pthread_t thread = start_thread(worker, NULL, &worker_tid);
	while (!__atomic_load_n(&states[1].looping, __ATOMIC_SEQ_CST))
		usleep(1000);
	char line[200];
	snprintf(line, sizeof(line), "READY pid=%d supported=1 worker=%d top=%p end=%p\n",
		 getpid(), worker_tid, (void *)midloop_top, (void *)midloop_end);
	states[0].announce = line;
	states[0].announce_len = strlen(line);
	run_loop(&states[0]);
	pthread_join(thread, NULL);
	compare(&states[0], 0, "main");
	compare(&states[1], 1, "worker");
	return report();
}
