/*
 * The measurement timer, one API over two implementations (timer.c), chosen at build time:
 *
 *   -DMN_TIMER_SYSTICK  QEMU: SysTick on the processor clock, 24-bit down-counter extended to
 *                       64 bits by an overflow count kept in SysTick_Handler. Under
 *                       `-icount shift=S` one tick is 1e9/MN_TIMER_HZ ns of virtual time and one
 *                       guest instruction is 2^S ns. HELLO timer_kind 1.
 *   -DMN_TIMER_DWT      real silicon: the DWT cycle counter (CYCCNT), extended to 64 bits in
 *                       software. HELLO timer_kind 0.
 *
 * MN_TIMER_HZ (a -D macro) is the timer's ticks per second.
 */
#ifndef MN_TIMER_H_
#define MN_TIMER_H_

#include <stdint.h>

#if defined(MN_TIMER_SYSTICK) == defined(MN_TIMER_DWT)
#error "define exactly one of MN_TIMER_SYSTICK (QEMU) and MN_TIMER_DWT (real silicon)"
#endif
#ifndef MN_TIMER_HZ
#error "define MN_TIMER_HZ, the timer's ticks per second"
#endif

#ifdef MN_TIMER_SYSTICK
#define MN_TIMER_KIND 1u /* QEMU icount ticks */
#else
#define MN_TIMER_KIND 0u /* CPU cycles */
#endif

/* Start the timer; returns 1 when it advances, 0 when it does not (DWT present but stopped). */
int mn_timer_init(void);
/* Ticks since mn_timer_init(), monotonic. */
uint64_t mn_timer_now(void);
/* Wait for a timer edge before a measurement, so repeated measurements of the same work give
 * the same count (see timer.c for what that takes under QEMU). */
void mn_timer_sync(void);

#endif /* MN_TIMER_H_ */
