/* Register state beyond the general and vector registers, in two threads
 * with different values:
 *   the x87 stack full (eight 80-bit values: a denormal, an infinity, a
 *   NaN with a payload, one only 80 bits can hold, ...) with a control word
 *   rounding toward zero at 53-bit precision and a sticky zero-divide flag;
 *   MXCSR rounding toward zero with flush-to-zero, denormals-are-zero and a
 *   sticky flag; PKRU (when the CPU has protection keys) denying writes
 *   through one key and access through another; gs_base pointing at an area
 *   read through %gs; fs_base and a __thread variable. With "keyed", a page
 *   tagged with a protection key too, which a dump refuses.
 * All of it is set and read back inside one asm block that sleeps in
 * nanosleep() until the check signal, so nothing of the compiler's or
 * libc's can touch the x87 stack, the control words or %gs in between. */
#include "harness.h"

#include <asm/prctl.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define HWCAP2_FSGSBASE (1 << 1)

struct fpu_case {
	long double x87_in[8];
	uint16_t cw_in;
	uint32_t mxcsr_in;
	uint64_t gs_area[4];
	unsigned pkru_in;
	/* read just before the sleep, and after it */
	uint16_t cw_before, sw_before, cw_after, sw_after;
	uint32_t mxcsr_before, mxcsr_after;
	uint64_t gs_word_after;
	long double x87_out[8];
	uint64_t gs_base_before, fs_base_before, gs_base_after, fs_base_after;
	uint64_t rd_gs_base;
	unsigned pkru_after;
	long *tls_address;
	pthread_t self;
	pid_t tid;
	int holding;           /* set by the asm once all of it is loaded */
	const char *announce;  /* written to stdout then (the READY line) */
	size_t announce_len;
};

static __thread long tls_value;
static int have_pku, have_fsgsbase;
static struct fpu_case cases[2];

static unsigned read_pkru(void)
{
	unsigned eax, edx;
	__asm__ volatile(".byte 0x0f, 0x01, 0xee" : "=a"(eax), "=d"(edx) : "c"(0));  /* rdpkru */
	return eax;
}

static void write_pkru(unsigned value)
{
	__asm__ volatile(".byte 0x0f, 0x01, 0xef" : : "a"(value), "c"(0), "d"(0));  /* wrpkru */
}

static void hold_state(struct fpu_case *c)
{
	static const struct timespec ms = { 0, 1000000 };
	uint16_t default_cw = 0x037f;
	uint32_t default_mxcsr = 0x1f80;
	volatile long double zero = 0;
	volatile long double inf = 1.0L / zero;  /* x87 zero-divide: a sticky flag */
	(void)inf;
	syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)c->gs_area);
	syscall(SYS_arch_prctl, ARCH_GET_GS, &c->gs_base_before);
	syscall(SYS_arch_prctl, ARCH_GET_FS, &c->fs_base_before);
	if (have_pku)
		write_pkru(c->pkru_in);
	__asm__ volatile(
		"fldcw %[cw_in]\n ldmxcsr %[mxcsr_in]\n"
		"fldt 0(%[x])\n fldt 16(%[x])\n fldt 32(%[x])\n fldt 48(%[x])\n"
		"fldt 64(%[x])\n fldt 80(%[x])\n fldt 96(%[x])\n fldt 112(%[x])\n"
		"fnstcw %[cw_before]\n fnstsw %[sw_before]\n stmxcsr %[mxcsr_before]\n"
		"movl $1, %[holding]\n"
		"mov %[len], %%rdx\n test %%rdx, %%rdx\n jz 1f\n"
		"mov $1, %%eax\n mov $1, %%edi\n mov %[text], %%rsi\n syscall\n"
		"1: mov $35, %%eax\n mov %[ms], %%rdi\n xor %%esi, %%esi\n syscall\n"
		"cmpl $0, (%[flag])\n je 1b\n"
		"fnstcw %[cw_after]\n fnstsw %[sw_after]\n stmxcsr %[mxcsr_after]\n"
		"mov %%gs:8, %%rax\n mov %%rax, %[gs_word]\n"
		"fstpt 112(%[y])\n fstpt 96(%[y])\n fstpt 80(%[y])\n fstpt 64(%[y])\n"
		"fstpt 48(%[y])\n fstpt 32(%[y])\n fstpt 16(%[y])\n fstpt 0(%[y])\n"
		"fldcw %[default_cw]\n ldmxcsr %[default_mxcsr]\n"
		: [cw_before] "=m"(c->cw_before), [sw_before] "=m"(c->sw_before),
		  [mxcsr_before] "=m"(c->mxcsr_before), [cw_after] "=m"(c->cw_after),
		  [sw_after] "=m"(c->sw_after), [mxcsr_after] "=m"(c->mxcsr_after),
		  [gs_word] "=m"(c->gs_word_after), [holding] "=m"(c->holding)
		: [cw_in] "m"(c->cw_in), [mxcsr_in] "m"(c->mxcsr_in), [x] "r"(c->x87_in),
		  [y] "r"(c->x87_out), [ms] "r"(&ms), [flag] "r"(&check_requested),
		  [default_cw] "m"(default_cw), [default_mxcsr] "m"(default_mxcsr),
		  [text] "m"(c->announce), [len] "m"(c->announce_len)
		: "rax", "rcx", "rdx", "rdi", "rsi", "r11", "memory", "cc", "st", "st(1)", "st(2)",
		  "st(3)", "st(4)", "st(5)", "st(6)", "st(7)");
	if (have_pku) {
		c->pkru_after = read_pkru();
		write_pkru(0);
	}
	if (have_fsgsbase)
		__asm__ volatile("rdgsbase %0" : "=r"(c->rd_gs_base));
	syscall(SYS_arch_prctl, ARCH_GET_GS, &c->gs_base_after);
	syscall(SYS_arch_prctl, ARCH_GET_FS, &c->fs_base_after);
}

static void fill_case(struct fpu_case *c, int n)
{
	static const unsigned char nan_with_payload[10] = {
		0x21, 0x43, 0x65, 0x87, 0xa9, 0xcb, 0x00, 0xc0, 0xff, 0x7f };
	static const unsigned char denormal[10] = { 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
	memset(c, 0, sizeof(*c));
	c->x87_in[0] = 1.0L / 3 + n;
	memcpy(&c->x87_in[1], denormal, 10);
	c->x87_in[2] = n ? -__builtin_infl() : __builtin_infl();
	memcpy(&c->x87_in[3], nan_with_payload, 10);
	c->x87_in[4] = 1e4000L * (n + 1);  /* beyond a double */
	c->x87_in[5] = -0.0L;
	c->x87_in[6] = 3.14159265358979323846264338327950288L * (n + 2);
	c->x87_in[7] = -12345.678L - n;
	/* round toward zero (n=0) or up (n=1), 53-bit precision, all masked */
	c->cw_in = n ? 0x0a7f : 0x0e7f;
	/* RC toward zero + FZ + DAZ + PE flag (n=0); RC down + FZ + UE flag (n=1) */
	c->mxcsr_in = n ? 0xbf90 : 0xffe0;
	for (int i = 0; i < 4; i++)
		c->gs_area[i] = 0x6a5a000000000000ULL + n * 0x100 + i;
}

static void check_case(struct fpu_case *c, const char *who)
{
	expect(c->cw_before == c->cw_in && c->cw_after == c->cw_before,
	       "%s: x87 control word %#x, was %#x, set %#x", who, c->cw_after, c->cw_before, c->cw_in);
	expect(c->sw_after == c->sw_before && (c->sw_before & 0x4),
	       "%s: x87 status word %#x, was %#x", who, c->sw_after, c->sw_before);
	expect(c->mxcsr_before == c->mxcsr_in && c->mxcsr_after == c->mxcsr_before,
	       "%s: MXCSR %#x, was %#x, set %#x", who, c->mxcsr_after, c->mxcsr_before, c->mxcsr_in);
	for (int i = 0; i < 8; i++)
		expect(!memcmp(&c->x87_in[i], &c->x87_out[i], 10), "%s: x87 st(%d) changed", who, 7 - i);
	expect(c->gs_base_before == (uint64_t)c->gs_area && c->gs_base_after == c->gs_base_before,
	       "%s: gs_base %#lx, was %#lx", who, (long)c->gs_base_after, (long)c->gs_base_before);
	expect(c->gs_word_after == c->gs_area[1], "%s: %%gs:8 reads %#lx", who, (long)c->gs_word_after);
	if (have_fsgsbase)
		expect(c->rd_gs_base == c->gs_base_before, "%s: rdgsbase %#lx", who, (long)c->rd_gs_base);
	expect(c->fs_base_after == c->fs_base_before, "%s: fs_base %#lx, was %#lx", who,
	       (long)c->fs_base_after, (long)c->fs_base_before);
	if (have_pku)
		expect(c->pkru_after == c->pkru_in, "%s: PKRU %#x, set %#x", who, c->pkru_after,
		       c->pkru_in);
}

/* The "ProtectionKey:" of the mapping holding addr in smaps, or -1. */
static int protection_key_of(const void *addr)
{
	char line[512];
	FILE *f = fopen("/proc/self/smaps", "r");
	unsigned long a = (unsigned long)addr;
	int inside = 0, key = -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' '))
			inside = s <= a && a < e;
		else if (inside)
			sscanf(line, "ProtectionKey: %d", &key);
	}
	fclose(f);
	return key;
}

static void *worker(void *arg)
{
	struct fpu_case *c = arg;
	tls_value = 2000 + syscall(SYS_gettid);
	c->tls_address = &tls_value;
	c->self = pthread_self();
	__atomic_store_n(&c->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
	hold_state(c);
	expect(c->tls_address == &tls_value && tls_value == 2000 + c->tid &&
	       pthread_equal(c->self, pthread_self()), "worker: TLS or pthread_self changed");
	return NULL;
}

int main(int argc, char **argv)
{
	int keyed_page = argc > 1 && !strcmp(argv[1], "keyed");
	harness_init();
	have_fsgsbase = !!(getauxval(AT_HWCAP2) & HWCAP2_FSGSBASE);
	/* fails with ENOSPC or EINVAL without protection keys */
	int key_write = syscall(SYS_pkey_alloc, 0, 0), key_access = syscall(SYS_pkey_alloc, 0, 0);
	have_pku = key_write > 0 && key_access > 0;
	fill_case(&cases[0], 0);
	fill_case(&cases[1], 1);
	if (have_pku) {
		/* two bits per key: AD (access disable), WD (write disable) */
		cases[0].pkru_in = 2u << (2 * key_write) | 1u << (2 * key_access);
		cases[1].pkru_in = 1u << (2 * key_write);
	}
	tls_value = 1000;
	long *tls_address = &tls_value;
	pthread_t self = pthread_self();
	/* "keyed": a page of the write-denied key (a dump refuses it) */
	char *keyed = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	keyed[0] = 1;
	if (have_pku && keyed_page)
		syscall(SYS_pkey_mprotect, keyed, 4096, PROT_READ | PROT_WRITE, key_write);
	pthread_t thread = start_thread(worker, &cases[1], &cases[1].tid);
	while (!__atomic_load_n(&cases[1].holding, __ATOMIC_SEQ_CST))
		usleep(1000);
	/* READY is written from inside the asm, once the main thread holds
	 * its state too: the dump cannot come before */
	char line[200];
	snprintf(line, sizeof(line), "READY pid=%d pku=%d fsgsbase=%d worker=%d keyed=%p\n",
		 getpid(), have_pku, have_fsgsbase, cases[1].tid, (void *)keyed);
	cases[0].announce = line;
	cases[0].announce_len = strlen(line);
	hold_state(&cases[0]);
	pthread_join(thread, NULL);
	check_case(&cases[0], "main");
	check_case(&cases[1], "worker");
	expect(tls_address == &tls_value && tls_value == 1000 && pthread_equal(self, pthread_self()),
	       "main: TLS or pthread_self changed");
	if (have_pku && keyed_page)
		expect(protection_key_of(keyed) == key_write,
		       "the keyed page has protection key %d, not %d", protection_key_of(keyed),
		       key_write);
	return report();
}
