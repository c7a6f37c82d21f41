/* micronas runtime internals shared by the kernel files (not part of the public API). */
#ifndef MN_INTERNAL_H_
#define MN_INTERNAL_H_

#include <stddef.h>
#include <string.h>

#include "micronas_runtime.h"

#if MICRONAS_SIMD
#include <arm_acle.h>

/* rotate right by 8; GCC emits ROR or folds it into SXTB16's rotate operand */
static inline uint32_t mn_ror8(uint32_t x) { return (x >> 8) | (x << 24); }
#endif

/* sum over i < n of (a[i] + a_offset) * b[i], in int32.
 * The SIMD path adds the offset to two sign-extended bytes per halfword (__sxtab16; the sums
 * fit in 16 bits) and multiply-accumulates two halfword pairs per __smlad: the same integers,
 * so the result is identical to the portable loop. */
static inline int32_t mn_dot_s8(const int8_t *a, const int8_t *b, int32_t n, int32_t a_offset) {
    int32_t acc = 0;
    int32_t i = 0;
#if MICRONAS_SIMD
    const uint32_t off2 = ((uint32_t)a_offset & 0xFFFFu) | ((uint32_t)a_offset << 16);
    for (; i + 4 <= n; i += 4) {
        uint32_t av, bv;
        memcpy(&av, a + i, 4); /* unaligned word loads are fine on M4/M7/M33 */
        memcpy(&bv, b + i, 4);
        const int16x2_t a02 = __sxtab16(off2, av);            /* a0+off, a2+off */
        const int16x2_t a13 = __sxtab16(off2, mn_ror8(av));  /* a1+off, a3+off */
        const int16x2_t b02 = __sxtb16(bv);
        const int16x2_t b13 = __sxtb16(mn_ror8(bv));
        acc = __smlad(a02, b02, acc);
        acc = __smlad(a13, b13, acc);
    }
#endif
    for (; i < n; ++i) {
        acc += ((int32_t)a[i] + a_offset) * (int32_t)b[i];
    }
    return acc;
}

static inline int8_t mn_requantize_s8(int32_t acc, int32_t multiplier, int32_t shift, int32_t output_offset,
                                      int32_t act_min, int32_t act_max) {
    return (int8_t)mn_clamp(mn_requantize(acc, multiplier, shift) + output_offset, act_min, act_max);
}

#endif /* MN_INTERNAL_H_ */
