/* micronas runtime internals shared by the kernel files (not part of the public API). */
#ifndef MN_INTERNAL_H_
#define MN_INTERNAL_H_

#include <stddef.h>
#include <string.h>

#include "micronas_runtime.h"

/* ---- requantisation, per output channel ---------------------------------------------------
 *
 * mn_requantize(x, m, shift) is TFLM's double-rounding MultiplyByQuantizedMultiplier:
 *     s = SRDHM(x, m) = floor((x*m + 2^30) / 2^31)              (m != INT32_MIN: no saturation)
 *     y = RDBPOT(s, e) = floor((s + 2^(e-1) - [s < 0]) / 2^e)   for e = -shift >= 1
 * The two floors nest into one (floor((floor(a / A) + c) / B) = floor((a + c*A) / (A*B)) for
 * integers), and for m >= 0 the sign of s, where it matters (s != 0), is the sign of x. So with
 * the output offset z added (an exact multiple of 2^(31+e) inside the floor):
 *     y + z = floor((x*m + 2^30 + 2^(30+e) - [x < 0]*2^31 + z*2^(31+e)) / 2^(31+e))
 * For e >= 2 the constant is, as a 64-bit high:low pair, (2^(e-2) + z*2^(e-1) - [x < 0]) :
 * (2^30 | [x < 0]*2^31), so on Armv7E-M it is AND, ORR, ADD (x ASR #31), one SMLAL into that
 * pair and an ASR of the high word by e - 1: five instructions instead of two rounding steps.
 * For |z| <= 256 and e <= 22 the 64-bit sum stays below 2^63 in magnitude and its high word is
 * exact, for every int32 x and every m in [0, 2^31): what the code generator emits in practice
 * (tests/test_simd_qemu.py checks it against the reference on the host for random x and every
 * shift and offset).
 *
 * Larger scales (shift >= -1) take the same one-step form on the accumulator pre-shifted by p
 * bits, x' = x * 2^p (mn_rq_make_acc, given the bias and fan-in that bound |x| so that x' cannot
 * overflow):
 *   e = 1, p = 1:  y + z = floor((x'*m + 2^31 + (1 + 2z - [x < 0]) * 2^32) / 2^33)
 *   e = 0 (TFLM left shift l = max(shift, 0)), p = l + 1:
 *                  y + z = floor((x*2^l*m + 2^30 + z*2^31) / 2^31) = floor((x'*m + 2^31 + z*2^32) / 2^32)
 * i.e. low word 2^31 (instead of 2^30 | [x < 0]*2^31), high word rhi plus the sign term where
 * there is one (hm = -1 for e >= 1, 0 for e = 0), shift e - 1 (1, 0). Tiny scales (e = 23..31:
 * the channels training left almost dead) take the e >= 2 form with z added after the shift
 * (z * 2^(e-1) would overflow the high word). So every scale a trained layer has costs the same
 * few instructions (mn_rq_gen: LSL, AND, ORR, AND, ADD, SMLAL, ASR, ADD) and a kernel's cost no
 * longer depends on its trained scales (the latency tables measure one representative scale).
 * Other pairs (shift < -31; a negative multiplier; an accumulator that could overflow the
 * pre-shift) take mn_requantize itself. */
typedef struct {
    int32_t mult;
    int32_t rhi;   /* one-step form: the high word's constant */
    int32_t sh;    /* one-step form: the final shift; -1 for the reference form */
    int32_t lo;    /* one-step form: the low word's constant, 2^30 or 2^31 */
    int32_t hm;    /* one-step form: -1 with the sign term in the high word, 0 without */
    int32_t pre;   /* one-step form: accumulator pre-shift p */
    int32_t post;  /* one-step form: offset added after the shift (z for tiny scales, else 0) */
    int32_t shift; /* reference form: TFLM shift */
    int32_t ooff;  /* reference form: z */
} mn_rq;

/* the e >= 2 one-step form for e = 2..22 (sh >= 0, pre = post = 0: mn_rq_fast), else the
 * reference form */
static inline mn_rq mn_rq_make(int32_t multiplier, int32_t shift, int32_t output_offset) {
    mn_rq q;
    q.mult = multiplier;
    q.shift = shift;
    q.ooff = output_offset;
    q.rhi = 0;
    q.sh = -1;
    q.lo = 0x40000000;
    q.hm = -1;
    q.pre = 0;
    q.post = 0;
    if (shift <= -2 && shift >= -22 && multiplier >= 0 && output_offset >= -256 && output_offset <= 256) {
        q.sh = -shift - 1;
        q.rhi = ((int32_t)1 << (-shift - 2)) + output_offset * ((int32_t)1 << q.sh);
    }
    return q;
}

/* mn_rq_make, and where that gives the reference form a one-step form for the other scales:
 * tiny ones (shift -23..-31) and large ones (shift >= -1, pre-shifted, where |acc| <= |bias| +
 * n * 255 * 255 guarantees that the shifted accumulator fits in int32) */
static inline mn_rq mn_rq_make_acc(int32_t multiplier, int32_t shift, int32_t output_offset, int32_t bias,
                                   int32_t n) {
    mn_rq q = mn_rq_make(multiplier, shift, output_offset);
    if (q.sh >= 0 || multiplier < 0 || output_offset < -256 || output_offset > 256 || shift < -31 || shift > 29)
        return q;
    if (shift <= -23) {
        q.sh = -shift - 1;
        q.rhi = (int32_t)1 << (-shift - 2);
        q.post = output_offset;
        return q;
    }
    const int32_t pre = shift == -1 ? 1 : shift + 1;
    const int64_t xmax = (bias < 0 ? -(int64_t)bias : (int64_t)bias) + (int64_t)n * 65025;
    if (n < 0 || xmax > (INT32_MAX >> pre)) return q;
    q.pre = pre;
    q.lo = (int32_t)0x80000000u;
    if (shift == -1) {
        q.rhi = 1 + 2 * output_offset;
        q.hm = -1;
        q.sh = 1;
    } else {
        q.rhi = output_offset;
        q.hm = 0;
        q.sh = 0;
    }
    return q;
}

/* the e >= 2 one-step form: requantised acc plus the output offset folded into rhi */
static inline int32_t mn_rq_fast(int32_t acc, int32_t mult, int32_t rhi, int32_t sh) {
    const uint32_t lo = ((uint32_t)acc & 0x80000000u) | 0x40000000u;
    const int32_t hi = rhi + (acc >> 31);
    const int64_t v = (int64_t)(((uint64_t)(uint32_t)hi << 32) | lo) + (int64_t)acc * mult;
    return (int32_t)(v >> 32) >> sh;
}

/* any one-step form (mn_rq_fast when pre = post = 0, lo = 2^30, hm = -1) */
static inline int32_t mn_rq_gen(int32_t acc, int32_t mult, int32_t rhi, int32_t sh, int32_t lo_c, int32_t hm,
                                int32_t pre, int32_t post) {
    const int32_t x = (int32_t)((uint32_t)acc << pre);
    const uint32_t lo = ((uint32_t)x & 0x80000000u) | (uint32_t)lo_c;
    const int32_t hi = rhi + ((x >> 31) & hm);
    const int64_t v = (int64_t)(((uint64_t)(uint32_t)hi << 32) | lo) + (int64_t)x * mult;
    return ((int32_t)(v >> 32) >> sh) + post;
}

/* q's one-step form (q->sh >= 0) */
static inline int32_t mn_rq_one(const mn_rq *q, int32_t acc) {
    return mn_rq_gen(acc, q->mult, q->rhi, q->sh, q->lo, q->hm, q->pre, q->post);
}

/* the reference form, kept out of line: it is the rare case, and inlined at every call site it
 * would cost more flash than the kernels' fast paths */
__attribute__((noinline, unused)) static int32_t mn_rq_ref(int32_t acc, int32_t mult, int32_t shift, int32_t ooff) {
    return mn_requantize(acc, mult, shift) + ooff;
}

/* mn_requantize(acc, multiplier, shift) + output_offset */
static inline int32_t mn_rq_apply(const mn_rq *q, int32_t acc) {
    if (q->sh < 0) return mn_rq_ref(acc, q->mult, q->shift, q->ooff); /* by value: q can stay in registers */
    return mn_rq_one(q, acc);
}

/* requantised, offset and clamped to the activation range */
static inline int8_t mn_rq_out(const mn_rq *q, int32_t acc, int32_t act_min, int32_t act_max) {
    return (int8_t)mn_clamp(mn_rq_apply(q, acc), act_min, act_max);
}

/* ---- a convolution's outputs folded into a consumer (mn_fused.c) ----------------------------
 *
 * The fused CONV_2D -> MUL(attention) [-> ADD] kernel runs the convolution of mn_conv.c with an
 * epilogue: each int8 output c of channel o, as the plain conv would store it, is instead
 *     m = clamp(requantize((c + mul_conv_offset) * (att[o * att_stride] + mul_att_offset)) + z_mul)
 * (TFLM's MUL), and for every expert after the first also folded into the running sum r that
 * the output element holds, as TFLM's ADD of r and m (either may be ADD's first input: each
 * side gets that input's offset and multiplier):
 *     r' = clamp(requantize(scale(r) + scale(m)) + z_add),
 *     scale(x) = requantize((x + offset) * 2^left_shift, multiplier_x, shift_x).
 * Every intermediate int8 of the unfused graph is formed exactly as its kernel forms it, so the
 * result is bit-exact; the output element is the only storage. */
typedef struct {
    const int8_t *att;   /* the attention tensor: att[o * att_stride] scales channel o */
    int32_t att_stride;  /* 0: one value for every channel (DY-Conv), 1: one per channel (KernelDNA) */
    int32_t mul_conv_offset, mul_att_offset;
    mn_rq mul_rq; /* MUL's requantisation with its output offset */
    int32_t mul_min, mul_max;
    int32_t add; /* 0: the first expert (m is the running value), 1: ADD m into it */
    /* [256] or NULL: scale(m(c)) of every conv output c at c + 128, for a scalar attention (m then
     * depends on c alone; mn_fused.c fills it per expert, 256 evaluations of the formula below) */
    const int32_t *new_scaled;
    const int32_t *prev_scaled; /* [256] or NULL: the running sum's rescaling, at prev + 128 */
    int32_t add_prev_offset, add_new_offset, left_shift;
    int32_t prev_mult, prev_exp, new_mult, new_exp; /* ADD's input rescaling: multiplier, -shift >= 0 */
    mn_rq add_out_rq; /* the sum's requantisation with ADD's output offset */
    int32_t add_min, add_max;
    int32_t tabulated; /* both tables and the fast requantisation form: mn_epilogue_tab applies */
    const int8_t *mul_table; /* [256] or NULL: the first expert's MUL output of every c, at c + 128 */
} mn_conv_epilogue;

/* TFLM's MultiplyByQuantizedMultiplierSmallerThanOneExp(v, m, -e) for |v| < 2^30 (an ADD input
 * times 2^20): SRDHM cannot saturate there, so it is one 64-bit multiply-add and shift. */
static inline int32_t mn_rq_below_one(int32_t v, int32_t m, int32_t e) {
    return mn_rounding_divide_by_pot((int32_t)(((int64_t)v * m + ((int64_t)1 << 30)) >> 31), e);
}

/* MUL's int8 output for conv output c and attention factor a (the value plus its offset), in
 * the fast requantisation form (mul_rq.sh >= 0) */
static inline int8_t mn_epilogue_mul_fast(const mn_conv_epilogue *e, int32_t c, int32_t a) {
    return (int8_t)mn_clamp(mn_rq_fast((c + e->mul_conv_offset) * a, e->mul_rq.mult, e->mul_rq.rhi, e->mul_rq.sh),
                            e->mul_min, e->mul_max);
}

/* MUL's int8 output for conv output c of channel o */
static inline int32_t mn_epilogue_mul(const mn_conv_epilogue *e, int32_t o, int32_t c) {
    const int32_t a = (int32_t)e->att[o * e->att_stride] + e->mul_att_offset;
    return mn_clamp(mn_rq_apply(&e->mul_rq, (c + e->mul_conv_offset) * a), e->mul_min, e->mul_max);
}

/* ADD's rescaled second term for MUL output m */
static inline int32_t mn_epilogue_new(const mn_conv_epilogue *e, int32_t m) {
    return mn_rq_below_one((m + e->add_new_offset) * ((int32_t)1 << e->left_shift), e->new_mult, e->new_exp);
}

/* ADD's rescaled running sum */
static inline int32_t mn_epilogue_prev(const mn_conv_epilogue *e, int32_t prev) {
    return mn_rq_below_one((prev + e->add_prev_offset) * ((int32_t)1 << e->left_shift), e->prev_mult, e->prev_exp);
}

static inline int8_t mn_epilogue_apply(const mn_conv_epilogue *e, int32_t o, int32_t c, int32_t prev) {
    if (!e->add) return e->mul_table ? e->mul_table[c + 128] : (int8_t)mn_epilogue_mul(e, o, c);
    const int32_t sn = e->new_scaled ? e->new_scaled[c + 128] : mn_epilogue_new(e, mn_epilogue_mul(e, o, c));
    const int32_t sp = e->prev_scaled ? e->prev_scaled[prev + 128] : mn_epilogue_prev(e, prev);
    return (int8_t)mn_clamp(mn_rq_apply(&e->add_out_rq, sp + sn), e->add_min, e->add_max);
}

/* mn_epilogue_apply when e->tabulated: two table loads, one requantisation, the clamp */
static inline int8_t mn_epilogue_tab(const mn_conv_epilogue *e, int32_t c, int32_t prev) {
    const int32_t sum = e->prev_scaled[prev + 128] + e->new_scaled[c + 128];
    return (int8_t)mn_clamp(mn_rq_fast(sum, e->add_out_rq.mult, e->add_out_rq.rhi, e->add_out_rq.sh), e->add_min,
                            e->add_max);
}

/* the conv's int8 output v of channel o into *dst: stored (epi NULL) or folded by the epilogue */
static inline void mn_conv_store(const mn_conv_epilogue *epi, int8_t *dst, int32_t o, int8_t v) {
    *dst = epi ? mn_epilogue_apply(epi, o, v, *dst) : v;
}

/* mn_conv_s8 with every output passed through `epi` (NULL: mn_conv_s8 itself) */
void mn_conv_s8_epilogue(const mn_conv_params *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                         int8_t *output, const mn_conv_epilogue *epi);


/* ---- requantisation of a doubled value, for ADD and MUL ------------------------------------
 *
 * mn_sc_apply(s, t), t = 2x, is mn_requantize(x, m, -e) + z for TFLM shifts -e <= 0, m >= 0:
 *   e = 0:  SRDHM(x, m) + z = floor((x*m + 2^30) / 2^31) + z = floor((t*m + 2^31 + z*2^32) / 2^32)
 *   e >= 1: mn_rq's one-floor form, floor((x*m + 2^30 + 2^(30+e) - [x<0]*2^31 + z*2^(31+e)) / 2^(31+e)),
 *           is floor(floor((t*m + 2^31 + (2^(e-1) + z*2^e - [t<0]) * 2^32) / 2^32) / 2^e)
 * (nested floors of integers merge; t and x have the same sign). Both are one SMMLAR, the high word
 * of c*2^32 + t*m + 2^31, then an arithmetic shift by e, with c = c0 + ([t < 0] ? cneg : 0):
 * c0 = 2^(e-1) + z*2^e and cneg = -1 for e >= 1, c0 = z and cneg = 0 for e = 0. Four
 * instructions on Armv7E-M (AND with ASR #31, ADD, SMMLAR, ASR) where the reference takes SMULL
 * and two rounding steps. Valid while t and the high word fit in int32: mn_sc_make checks it for
 * the largest |x| the caller can produce (xmax), and refuses otherwise (the caller then takes
 * mn_requantize). tests/test_simd_qemu.py checks it against the two rounding steps on the host. */
typedef struct {
    int32_t m, c0, cneg, e;
} mn_sc;

/* 1 and *s filled when mn_sc_apply(s, 2x) equals mn_requantize(x, m, shift) + z for |x| <= xmax */
static inline int mn_sc_make(mn_sc *s, int32_t m, int32_t shift, int32_t z, int32_t xmax) {
    if (m < 0 || shift > 0 || shift < -31 || xmax < 0 || xmax > 0x3FFFFFFF) return 0;
    const int32_t e = -shift;
    const int64_t c0 = e == 0 ? (int64_t)z : ((int64_t)1 << (e - 1)) + (int64_t)z * ((int64_t)1 << e);
    /* |high word| <= |c| + |t*m| / 2^32 + 1 < |c0| + 1 + xmax + 1 */
    if ((c0 < 0 ? -c0 : c0) + (int64_t)xmax + 2 > (int64_t)INT32_MAX) return 0;
    s->m = m;
    s->c0 = (int32_t)c0;
    s->cneg = e == 0 ? 0 : -1;
    s->e = e;
    return 1;
}

/* (c * 2^32 + a * b + 2^31) >> 32, the high word (SMMLAR) */
static inline int32_t mn_smmlar(int32_t a, int32_t b, int32_t c) {
#if MICRONAS_SIMD
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
#else
    const uint64_t v = ((uint64_t)(uint32_t)c << 32) + (uint64_t)((int64_t)a * b) + 0x80000000u;
    return (int32_t)(uint32_t)(v >> 32);
#endif
}

static inline int32_t mn_sc_apply(const mn_sc *s, int32_t t) {
    return mn_smmlar(t, s->m, s->c0 + ((t >> 31) & s->cneg)) >> s->e;
}

#if MICRONAS_SIMD
#include <arm_acle.h>

/* SXTB16 / SXTAB16 with their ROR #8 operand (bytes 1 and 3). ACLE has no rotated forms and
 * GCC 12 does not fold a rotate into them (it emits a separate ROR), so these are one-instruction
 * inline asm, as CMSIS-Core's __SXTB16_RORn. Not volatile: the compiler may schedule or drop them. */
static inline int16x2_t mn_sxtb16_ror8(uint32_t x) {
    int16x2_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
static inline int16x2_t mn_sxtab16_ror8(int16x2_t a, uint32_t x) {
    int16x2_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}

static inline uint32_t mn_ld32(const int8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4); /* unaligned word loads are fine on M4/M7/M33 (LDR, never LDRD/LDM) */
    return v;
}

/* both offsets of a zero-point offset as a halfword pair, for __sxtab16 */
static inline uint32_t mn_pair16(int32_t v) { return ((uint32_t)v & 0xFFFFu) | ((uint32_t)v << 16); }

/* insert the low byte of b at bit lsb of v (BFI; GCC does not form it from the mask-and-or) */
#define MN_BFI8(v, b, lsb) __asm__("bfi %0, %1, #" #lsb ", #8" : "+r"(v) : "r"(b))

/* four int8 lanes clamped to [lo, hi] lane-wise (lo4, hi4: the bounds in every byte) */
static inline uint32_t mn_clamp_s8x4(uint32_t v, uint32_t lo4, uint32_t hi4) {
    (void)__ssub8(v, lo4); /* GE per byte: v >= lo */
    v = __sel(v, lo4);
    (void)__ssub8(hi4, v); /* GE per byte: hi >= v */
    return __sel(v, hi4);
}

/* act_min / act_max in every byte */
static inline uint32_t mn_bytes4(int32_t v) { return 0x01010101u * (uint8_t)v; }

/* four results (each within int32) saturated to int8, packed little-endian, clamped lane-wise */
static inline uint32_t mn_pack4(int32_t r0, int32_t r1, int32_t r2, int32_t r3, uint32_t lo4, uint32_t hi4) {
    uint32_t v = (uint32_t)__ssat(r0, 8);
    const uint32_t b1 = (uint32_t)__ssat(r1, 8), b2 = (uint32_t)__ssat(r2, 8), b3 = (uint32_t)__ssat(r3, 8);
    MN_BFI8(v, b1, 8);
    MN_BFI8(v, b2, 16);
    MN_BFI8(v, b3, 24);
    return mn_clamp_s8x4(v, lo4, hi4);
}

/* Word loads in program order. Volatile asm: GCC's pre-allocation scheduler would otherwise
 * hoist all loads of an unrolled step to the top and spill the accumulators around them. The
 * "m" operand names the 4 bytes read. Post-increment and register-offset forms, as in the loop. */
#define MN_LDR_POST(v, ptr) \
    __asm__ volatile("ldr %0, [%1], #4" : "=r"(v), "+r"(ptr) : "m"(*(const int8_t(*)[4])(ptr)))
#define MN_LDR_OFF(v, ptr, off) \
    __asm__ volatile("ldr %0, [%1, %2]" : "=r"(v) : "r"(ptr), "r"(off), "m"(*(const int8_t(*)[4])((ptr) + (off))))

/* *a0 += sum (x[i] + off) * w[i], *a1 += sum (x[i] + off) * w[wstep + i], i < n */
static inline void mn_dot_1x2_off(const int8_t *x, const int8_t *w, int32_t wstep, int32_t n, int32_t off, int32_t *a0,
                           int32_t *a1) {
    int32_t s0 = *a0, s1 = *a1;
    const uint32_t off2 = mn_pair16(off);
    const int8_t *const wend = w + (n & ~3);
    while (w != wend) {
        uint32_t xv, wv;
        MN_LDR_POST(xv, x);
        const int16x2_t x02 = __sxtab16(off2, xv), x13 = mn_sxtab16_ror8(off2, xv);
        MN_LDR_OFF(wv, w, wstep);
        s1 = __smlad(x02, __sxtb16(wv), s1);
        s1 = __smlad(x13, mn_sxtb16_ror8(wv), s1);
        MN_LDR_POST(wv, w);
        s0 = __smlad(x02, __sxtb16(wv), s0);
        s0 = __smlad(x13, mn_sxtb16_ror8(wv), s0);
    }
    for (int32_t r = n & 3; r > 0; --r, ++x, ++w) {
        const int32_t xi = x[0] + off;
        s0 += xi * w[0];
        s1 += xi * w[wstep];
    }
    *a0 = s0;
    *a1 = s1;
}
#endif

/* sum over i < n of (a[i] + a_offset) * b[i], in int32.
 * The SIMD path adds the offset to two sign-extended bytes per halfword (__sxtab16; the sums
 * fit in 16 bits) and multiply-accumulates two halfword pairs per __smlad: the same integers,
 * so the result is identical to the portable loop. */
static inline int32_t mn_dot_s8(const int8_t *a, const int8_t *b, int32_t n, int32_t a_offset) {
    int32_t acc = 0;
    int32_t i = 0;
#if MICRONAS_SIMD
    const uint32_t off2 = mn_pair16(a_offset);
    for (; i + 4 <= n; i += 4) {
        const uint32_t av = mn_ld32(a + i), bv = mn_ld32(b + i);
        acc = __smlad(__sxtab16(off2, av), __sxtb16(bv), acc);              /* a0+off, a2+off */
        acc = __smlad(mn_sxtab16_ror8(off2, av), mn_sxtb16_ror8(bv), acc); /* a1+off, a3+off */
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
