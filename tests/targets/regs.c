/* Registers survive: general registers r12-r15, ymm0-15 and, when the CPU
 * has AVX-512, zmm16-31 and the opmask registers k1-k7 hold known values
 * while the thread sits in a raw pause() syscall (the dump happens there);
 * after the check signal the values must still be there. All of it happens
 * inside one asm block, so the compiler cannot move anything in between. */
#include "harness.h"

#include <stdint.h>

static uint8_t ymm_in[16][32] __attribute__((aligned(64)));
static uint8_t ymm_out[16][32] __attribute__((aligned(64)));
static uint8_t zmm_in[16][64] __attribute__((aligned(64)));
static uint8_t zmm_out[16][64] __attribute__((aligned(64)));
static uint64_t k_in[7], k_out[7];
static uint64_t gp_out[4];

#define LOAD_YMM(n) "vmovdqu " #n "*32(%[yin]), %%ymm" #n "\n"
#define STORE_YMM(n) "vmovdqu %%ymm" #n ", " #n "*32(%[yout])\n"
#define LOAD_ALL_YMM                                                          \
	LOAD_YMM(0) LOAD_YMM(1) LOAD_YMM(2) LOAD_YMM(3) LOAD_YMM(4) LOAD_YMM(5) \
	LOAD_YMM(6) LOAD_YMM(7) LOAD_YMM(8) LOAD_YMM(9) LOAD_YMM(10)           \
	LOAD_YMM(11) LOAD_YMM(12) LOAD_YMM(13) LOAD_YMM(14) LOAD_YMM(15)
#define STORE_ALL_YMM                                                          \
	STORE_YMM(0) STORE_YMM(1) STORE_YMM(2) STORE_YMM(3) STORE_YMM(4)       \
	STORE_YMM(5) STORE_YMM(6) STORE_YMM(7) STORE_YMM(8) STORE_YMM(9)       \
	STORE_YMM(10) STORE_YMM(11) STORE_YMM(12) STORE_YMM(13) STORE_YMM(14)  \
	STORE_YMM(15)

/* zmm16-31 live in the AVX-512 Hi16_ZMM state component */
#define LOAD_ZMM(n, r) "vmovdqu64 " #n "*64(%[zin]), %%zmm" #r "\n"
#define STORE_ZMM(n, r) "vmovdqu64 %%zmm" #r ", " #n "*64(%[zout])\n"
#define LOAD_ALL_ZMM                                                             \
	LOAD_ZMM(0, 16) LOAD_ZMM(1, 17) LOAD_ZMM(2, 18) LOAD_ZMM(3, 19)          \
	LOAD_ZMM(4, 20) LOAD_ZMM(5, 21) LOAD_ZMM(6, 22) LOAD_ZMM(7, 23)          \
	LOAD_ZMM(8, 24) LOAD_ZMM(9, 25) LOAD_ZMM(10, 26) LOAD_ZMM(11, 27)        \
	LOAD_ZMM(12, 28) LOAD_ZMM(13, 29) LOAD_ZMM(14, 30) LOAD_ZMM(15, 31)
#define STORE_ALL_ZMM                                                            \
	STORE_ZMM(0, 16) STORE_ZMM(1, 17) STORE_ZMM(2, 18) STORE_ZMM(3, 19)      \
	STORE_ZMM(4, 20) STORE_ZMM(5, 21) STORE_ZMM(6, 22) STORE_ZMM(7, 23)      \
	STORE_ZMM(8, 24) STORE_ZMM(9, 25) STORE_ZMM(10, 26) STORE_ZMM(11, 27)    \
	STORE_ZMM(12, 28) STORE_ZMM(13, 29) STORE_ZMM(14, 30) STORE_ZMM(15, 31)
#define LOAD_K(n) "kmovq " #n "*8-8(%[kin]), %%k" #n "\n"
#define STORE_K(n) "kmovq %%k" #n ", " #n "*8-8(%[kout])\n"
#define LOAD_ALL_K LOAD_K(1) LOAD_K(2) LOAD_K(3) LOAD_K(4) LOAD_K(5) LOAD_K(6) LOAD_K(7)
#define STORE_ALL_K STORE_K(1) STORE_K(2) STORE_K(3) STORE_K(4) STORE_K(5) STORE_K(6) STORE_K(7)

#define SET_GP                                                   \
	"mov $0x1111111111111111, %%r12\n mov $0x2222222222222222, %%r13\n" \
	"mov $0x3333333333333333, %%r14\n mov $0x4444444444444444, %%r15\n"
#define GET_GP                                                   \
	"mov %%r12, 0(%[gp])\n mov %%r13, 8(%[gp])\n"            \
	"mov %%r14, 16(%[gp])\n mov %%r15, 24(%[gp])\n"
/* pause() until the check signal has set the flag */
#define PAUSE_LOOP "1: mov $34, %%eax\n syscall\n cmpl $0, (%[flag])\n je 1b\n"
#define CLOBBERS                                                                     \
	"rax", "rcx", "r11", "r12", "r13", "r14", "r15", "memory", "xmm0", "xmm1",   \
	"xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",     \
	"xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

static void wait_with_avx(void)
{
	__asm__ volatile(LOAD_ALL_YMM SET_GP PAUSE_LOOP STORE_ALL_YMM GET_GP
			 :
			 : [yin] "r"(ymm_in), [yout] "r"(ymm_out), [gp] "r"(gp_out),
			   [flag] "r"(&check_requested)
			 : CLOBBERS);
}

/* the same plus zmm16-31 and k1-k7 (the compiler does not use those
 * without -mavx512f, so they need no clobbers) */
static void wait_with_avx512(void)
{
	__asm__ volatile(LOAD_ALL_YMM LOAD_ALL_ZMM LOAD_ALL_K SET_GP PAUSE_LOOP
			 STORE_ALL_YMM STORE_ALL_ZMM STORE_ALL_K GET_GP
			 :
			 : [yin] "r"(ymm_in), [yout] "r"(ymm_out), [zin] "r"(zmm_in),
			   [zout] "r"(zmm_out), [kin] "r"(k_in), [kout] "r"(k_out),
			   [gp] "r"(gp_out), [flag] "r"(&check_requested)
			 : CLOBBERS);
}

int main(void)
{
	harness_init();
	for (int r = 0; r < 16; r++)
		for (int i = 0; i < 32; i++)
			ymm_in[r][i] = (uint8_t)(r * 37 + i * 11 + 1);
	for (int r = 0; r < 16; r++)
		for (int i = 0; i < 64; i++)
			zmm_in[r][i] = (uint8_t)(r * 53 + i * 7 + 3);
	for (int i = 0; i < 7; i++)
		k_in[i] = 0x0101010101010101ULL * (i + 1);
	int avx512 = __builtin_cpu_supports("avx512f");
	ready("avx512=%d", avx512);
	if (avx512)
		wait_with_avx512();
	else
		wait_with_avx();
	if (avx512) {
		expect(!memcmp(zmm_in, zmm_out, sizeof(zmm_in)), "zmm16-31 changed");
		expect(!memcmp(k_in, k_out, sizeof(k_in)), "k1-k7 changed");
	}
	expect(!memcmp(ymm_in, ymm_out, sizeof(ymm_in)), "ymm0-15 changed");
	expect(gp_out[0] == 0x1111111111111111ULL && gp_out[1] == 0x2222222222222222ULL &&
	       gp_out[2] == 0x3333333333333333ULL && gp_out[3] == 0x4444444444444444ULL,
	       "r12-r15 changed");
	return report();
}
