/* The measurement timer: SysTick under QEMU, the DWT cycle counter on silicon (see timer.h). */
#include "timer.h"

#define REG32(addr) (*(volatile uint32_t *)(addr))

#ifdef MN_TIMER_SYSTICK

/* SysTick (ARMv7-M / ARMv8-M system control space) */
#define SYST_CSR REG32(0xE000E010u) /* control and status */
#define SYST_RVR REG32(0xE000E014u) /* reload value (24 bits) */
#define SYST_CVR REG32(0xE000E018u) /* current value; counts DOWN; any write clears it */
#define CSR_ENABLE (1u << 0)        /* counter enabled */
#define CSR_TICKINT (1u << 1)       /* exception on reaching 0 */
#define CSR_CLKSOURCE (1u << 2)     /* 1 = processor clock (0 = external reference clock) */
#define ICSR REG32(0xE000ED04u)     /* SCB interrupt control and state */
#define ICSR_PENDSTSET (1u << 26)   /* SysTick exception pending */

#define RELOAD 0x00FFFFFFu    /* the full 24 bits: one period is 2^24 ticks */
#define WRAP_GUARD (1u << 20) /* see mn_timer_sync */

static volatile uint32_t overflows; /* periods completed, counted by SysTick_Handler */
static uint32_t sync_target;        /* see mn_timer_sync */

void SysTick_Handler(void) { overflows++; }

int mn_timer_init(void) {
    SYST_CSR = 0;
    SYST_RVR = RELOAD;
    SYST_CVR = 0; /* clears the counter; it reloads to RELOAD on the next tick */
    overflows = 0;
    SYST_CSR = CSR_CLKSOURCE | CSR_TICKINT | CSR_ENABLE;
    uint32_t v0 = SYST_CVR;
    for (volatile int i = 0; i < 100; ++i) {
    }
    sync_target = SYST_CVR & 0xFFu; /* any value the counter really takes will do */
    return SYST_CVR != v0;
}

uint64_t mn_timer_now(void) {
    uint32_t primask;
    __asm__ volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
    uint32_t hi = overflows;
    uint32_t v = SYST_CVR;
    if (ICSR & ICSR_PENDSTSET) { /* wrapped, handler not run yet: count that period here */
        v = SYST_CVR;
        hi++;
    }
    __asm__ volatile("msr primask, %0" ::"r"(primask) : "memory");
    return ((uint64_t)hi << 24) | (uint64_t)(RELOAD - v);
}

/*
 * Start a measurement on a fixed phase of the tick grid.
 *
 * Under `-icount shift=S` virtual time advances 2^S ns per instruction, more than one tick
 * (50 ns at 20 MHz, 40 ns at 25 MHz; S = 7 gives 128 ns), so the counter changes at every
 * instruction and "waiting for an edge" pins nothing: the ticks counted for the same N
 * instructions, floor((t0 + N 2^S) / P) - floor(t0 / P), still depend on where t0 falls
 * between two ticks, i.e. on how many instructions ran before (host timing). That phase repeats
 * every M instructions (M = P / gcd(P, 2^S): 5 at 25 MHz, 25 at 20 MHz), in which the counter
 * moves by T = M 2^S / P ticks, a power of two dividing 256 for S <= 9. Each phase shows as a
 * distinct value of the counter modulo 256, so spinning until the low byte of the counter equals
 * one fixed value (sync_target, read once at boot) starts every measurement on the same phase.
 * The spin loop is 7 instructions, odd and prime to 5, so it samples every phase; the wait is
 * at most a few hundred instructions.
 *
 * First, if fewer than WRAP_GUARD ticks are left before the 24-bit counter wraps, wait for the
 * wrap: then a measured call shorter than 2^20 ticks never has SysTick_Handler inside it.
 */
static void spin_until_low_byte(uint32_t target) {
    __asm__ volatile("1: ldr  r3, [%0]\n\t"
                     "   uxtb r3, r3\n\t"
                     "   cmp  r3, %1\n\t"
                     "   nop\n\t"
                     "   nop\n\t"
                     "   nop\n\t"
                     "   bne  1b\n\t"
                     :
                     : "r"(&SYST_CVR), "r"(target)
                     : "r3", "cc", "memory");
}

void mn_timer_sync(void) {
    while (SYST_CVR < WRAP_GUARD) {
    }
    spin_until_low_byte(sync_target);
}

#else /* MN_TIMER_DWT */

/* Debug exception and monitor control, and the data watchpoint and trace unit */
#define DEMCR REG32(0xE000EDFCu)     /* debug exception and monitor control */
#define DEMCR_TRCENA (1u << 24)      /* enable DWT and ITM */
#define DWT_CTRL REG32(0xE0001000u)  /* DWT control */
#define DWT_CTRL_CYCCNTENA (1u << 0) /* enable the cycle counter */
#define DWT_CYCCNT REG32(0xE0001004u) /* cycle count (32 bits, wraps) */
#define DWT_LAR REG32(0xE0001FB0u)   /* CoreSight lock access (Cortex-M7: writes ignored until unlocked) */
#define DWT_LAR_KEY 0xC5ACCE55u

static uint32_t last_cyccnt, wraps;

int mn_timer_init(void) {
    DEMCR |= DEMCR_TRCENA;
#ifdef MN_DWT_UNLOCK
    DWT_LAR = DWT_LAR_KEY;
#endif
    DWT_CYCCNT = 0;
    DWT_CTRL |= DWT_CTRL_CYCCNTENA;
    uint32_t c0 = DWT_CYCCNT;
    for (volatile int i = 0; i < 100; ++i) {
    }
    last_cyccnt = DWT_CYCCNT;
    wraps = 0;
    return last_cyccnt != c0;
}

/* 64-bit cycles: counts wraps of CYCCNT seen between calls, so calls must come at least once per
 * 2^32 cycles (268 s at 16 MHz, 67 s at 64 MHz); a single timed call is always shorter here. */
uint64_t mn_timer_now(void) {
    uint32_t c = DWT_CYCCNT;
    if (c < last_cyccnt) wraps++;
    last_cyccnt = c;
    return ((uint64_t)wraps << 32) | c;
}

void mn_timer_sync(void) { /* cycle counts do not need an edge */ }

#endif
