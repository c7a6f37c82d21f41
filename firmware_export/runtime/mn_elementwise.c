/* ADD and MUL int8 with numpy-style broadcasting (TFLM reference integer_ops add.h / mul.h).
 *
 * TFLM's broadcast and same-shape paths apply the same per-element function, so one strided walk
 * serves both. The generator collapses the shapes, so the common cases (same shape, per-channel
 * or per-sample scalar) are a few long rows. */
#include "mn_internal.h"

/* One output row of n elements; a and b advance by sa and sb (0: broadcast). */
typedef void (*mn_row_fn)(const void *p, const int8_t *a, int32_t sa, const int8_t *b, int32_t sb, int8_t *out,
                          int32_t n);

/* Walk out_dims[0..2] and hand each innermost row to `row`; the output is written in order. */
static void mn_broadcast_rows(const mn_broadcast *s, const void *p, const int8_t *in1, const int8_t *in2,
                              int8_t *out, mn_row_fn row) {
    const int32_t *d = s->out_dims, *s1 = s->in1_strides, *s2 = s->in2_strides;
    for (int32_t i0 = 0; i0 < d[0]; ++i0) {
        for (int32_t i1 = 0; i1 < d[1]; ++i1) {
            for (int32_t i2 = 0; i2 < d[2]; ++i2) {
                const size_t o1 = (size_t)i0 * s1[0] + (size_t)i1 * s1[1] + (size_t)i2 * s1[2];
                const size_t o2 = (size_t)i0 * s2[0] + (size_t)i1 * s2[1] + (size_t)i2 * s2[2];
                row(p, in1 + o1, s1[3], in2 + o2, s2[3], out, d[3]);
                out += d[3];
            }
        }
    }
}

/* TFLM AddFunc, first half: (x + offset) * 2^left_shift, then scaled by a multiplier below one
 * (shift <= 0, so mn_requantize is MultiplyByQuantizedMultiplierSmallerThanOneExp). The
 * product stays below 2^28 for int8, hence a plain multiplication as in TFLM. */
static inline int32_t mn_add_scale(int32_t x, int32_t offset, int32_t left_shift, int32_t multiplier,
                                   int32_t shift) {
    return mn_requantize((x + offset) * ((int32_t)1 << left_shift), multiplier, shift);
}

/* The reference form, for constants outside the fast form's range (left_shift other than 20, an
 * output scale of 1 or more): TFLM's steps one by one. */
static void mn_add_row(const void *pv, const int8_t *a, int32_t sa, const int8_t *b, int32_t sb, int8_t *out,
                       int32_t n) {
    const mn_add_params *p = (const mn_add_params *)pv;
    for (int32_t i = 0; i < n; ++i) {
        const int32_t x = a[(size_t)i * sa], y = b[(size_t)i * sb];
        const int32_t sum = mn_add_scale(x, p->input1_offset, p->left_shift, p->input1_multiplier, p->input1_shift) +
                            mn_add_scale(y, p->input2_offset, p->left_shift, p->input2_multiplier, p->input2_shift);
        out[i] = mn_requantize_s8(sum, p->output_multiplier, p->output_shift, p->output_offset, p->act_min,
                                  p->act_max);
    }
}

/* ---- the fast forms of ADD and MUL ------------------------------------------------------------
 *
 * The same integers as TFLM, computed with mn_sc (one SMMLAR per rescaling, mn_internal.h) on
 * doubled values, with every per-element constant hoisted. Rows where one operand is a single
 * value (a per-sample attention weight, a per-channel row against a broadcast column) compute its
 * half once. The SIMD build does four elements per step: saturated to int8 (SSAT), packed into one
 * word (BFI) and clamped to the activation range lane-wise (SSUB8/SEL), one word store. */
#define MN_ADD_LSH 20 /* TFLite's int8 left shift; other values take mn_add_row */

typedef struct {
    mn_sc s1, s2, so;
    int32_t off1, off2; /* input offsets * 2^21: (x + offset) << 20, doubled for mn_sc */
    int32_t act_min, act_max;
} mn_add_k;

/* (x + offset) << 20, doubled */
#define MN_ADD_T(x, off) ((int32_t)(x) * ((int32_t)1 << (MN_ADD_LSH + 1)) + (off))

static inline int32_t mn_add_k_out(const mn_sc *so, int32_t s1, int32_t s2) { return mn_sc_apply(so, 2 * (s1 + s2)); }

/* in1 walks the row (stride 1); in2 walks it too (sb 1) or is one value (sb 0). Inlined into the
 * two callers below, so sb is a constant in each. */
static inline __attribute__((always_inline)) void mn_add_fast(const mn_add_k *k, const int8_t *a, const int8_t *b,
                                                              int32_t sb, int8_t *out, int32_t n) {
    const mn_sc s1 = k->s1, s2 = k->s2, so = k->so;
    const int32_t off1 = k->off1, off2 = k->off2;
    const int32_t bconst = sb ? 0 : mn_sc_apply(&s2, MN_ADD_T(b[0], off2));
#define MN_ADD_B(j) (sb ? mn_sc_apply(&s2, MN_ADD_T(b[j], off2)) : bconst)
#define MN_ADD_ONE(j) mn_add_k_out(&so, mn_sc_apply(&s1, MN_ADD_T(a[j], off1)), MN_ADD_B(j))
    int32_t i = 0;
#if MICRONAS_SIMD
    const uint32_t lo4 = mn_bytes4(k->act_min), hi4 = mn_bytes4(k->act_max);
    for (; i + 4 <= n; i += 4, a += 4, b += 4 * sb, out += 4) {
        const uint32_t v = mn_pack4(MN_ADD_ONE(0), MN_ADD_ONE(1), MN_ADD_ONE(2), MN_ADD_ONE(3), lo4, hi4);
        memcpy(out, &v, 4);
    }
#endif
    for (; i < n; ++i, ++a, b += sb, ++out) *out = (int8_t)mn_clamp(MN_ADD_ONE(0), k->act_min, k->act_max);
#undef MN_ADD_ONE
#undef MN_ADD_B
}

static void mn_add_fast_same(const mn_add_k *k, const int8_t *a, const int8_t *b, int8_t *out, int32_t n) {
    mn_add_fast(k, a, b, 1, out, n);
}
static void mn_add_fast_scalar(const mn_add_k *k, const int8_t *a, const int8_t *b, int8_t *out, int32_t n) {
    mn_add_fast(k, a, b, 0, out, n);
}

/* k[0] as given, k[1] with the operands swapped (ADD is symmetric in its two rescaled inputs) */
static void mn_add_fast_row(const void *pv, const int8_t *a, int32_t sa, const int8_t *b, int32_t sb, int8_t *out,
                            int32_t n) {
    const mn_add_k *k = (const mn_add_k *)pv;
    if (sa == 1 && sb == 1) mn_add_fast_same(k, a, b, out, n);
    else if (sa == 1 && sb == 0) mn_add_fast_scalar(k, a, b, out, n);
    else if (sa == 0 && sb == 1) mn_add_fast_scalar(k + 1, b, a, out, n);
    else {
        for (int32_t i = 0; i < n; ++i) {
            const int32_t r = mn_add_k_out(&k->so, mn_sc_apply(&k->s1, MN_ADD_T(a[(size_t)i * sa], k->off1)),
                                           mn_sc_apply(&k->s2, MN_ADD_T(b[(size_t)i * sb], k->off2)));
            out[i] = (int8_t)mn_clamp(r, k->act_min, k->act_max);
        }
    }
}

/* |(x + offset) << 20| <= 255 * 2^20 for int8 x and offset; each rescaled input is at most that
 * (a multiplier below one), so the sum is at most twice it */
#define MN_ADD_XMAX (255 * ((int32_t)1 << MN_ADD_LSH))

void mn_add_s8(const mn_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *output) {
    mn_add_k k[2];
    /* |x + offset| <= 255 for int8 x and offsets (zero points) in int8 */
    if (p->left_shift == MN_ADD_LSH && p->input1_offset >= -127 && p->input1_offset <= 128 &&
        p->input2_offset >= -127 && p->input2_offset <= 128 &&
        mn_sc_make(&k[0].s1, p->input1_multiplier, p->input1_shift, 0, MN_ADD_XMAX) &&
        mn_sc_make(&k[0].s2, p->input2_multiplier, p->input2_shift, 0, MN_ADD_XMAX) &&
        mn_sc_make(&k[0].so, p->output_multiplier, p->output_shift, p->output_offset, 2 * MN_ADD_XMAX + 2)) {
        k[0].off1 = p->input1_offset * ((int32_t)1 << (MN_ADD_LSH + 1));
        k[0].off2 = p->input2_offset * ((int32_t)1 << (MN_ADD_LSH + 1));
        k[0].act_min = p->act_min;
        k[0].act_max = p->act_max;
        k[1] = k[0];
        k[1].s1 = k[0].s2;
        k[1].s2 = k[0].s1;
        k[1].off1 = k[0].off2;
        k[1].off2 = k[0].off1;
        mn_broadcast_rows(&p->shape, k, in1, in2, output, mn_add_fast_row);
    } else {
        mn_broadcast_rows(&p->shape, p, in1, in2, output, mn_add_row);
    }
}

/* TFLM MulElementwise: the offset product (|.| <= 255 * 255) requantised with the general
 * MultiplyByQuantizedMultiplier (the shift may be positive). The reference form, for a positive
 * shift (an output scale below the product of the input scales). */
static void mn_mul_row(const void *pv, const int8_t *a, int32_t sa, const int8_t *b, int32_t sb, int8_t *out,
                       int32_t n) {
    const mn_mul_params *p = (const mn_mul_params *)pv;
    for (int32_t i = 0; i < n; ++i) {
        const int32_t x = a[(size_t)i * sa], y = b[(size_t)i * sb];
        const int32_t prod = (x + p->input1_offset) * (y + p->input2_offset);
        out[i] = mn_requantize_s8(prod, p->output_multiplier, p->output_shift, p->output_offset, p->act_min,
                                  p->act_max);
    }
}

typedef struct {
    mn_sc so;
    int32_t off1, off2; /* input offsets; off2 doubled, so (x + off1) * (2y + off2) is the doubled product */
    int32_t act_min, act_max;
} mn_mul_k;

static inline __attribute__((always_inline)) void mn_mul_fast(const mn_mul_k *k, const int8_t *a, const int8_t *b,
                                                              int32_t sb, int8_t *out, int32_t n) {
    const mn_sc so = k->so;
    const int32_t off1 = k->off1, off2 = k->off2;
    /* by one value: x * kb + off1 * kb (one MLA) */
    const int32_t kb = sb ? 0 : 2 * b[0] + off2, okb = off1 * kb;
#define MN_MUL_ONE(j) mn_sc_apply(&so, sb ? (a[j] + off1) * (2 * b[j] + off2) : a[j] * kb + okb)
    int32_t i = 0;
#if MICRONAS_SIMD
    const uint32_t lo4 = mn_bytes4(k->act_min), hi4 = mn_bytes4(k->act_max);
    if (sb) {
        /* halfword lanes: x + off1 and 2 (y + off2) (|.| <= 510), multiplied bottom x bottom and
         * top x top: the doubled products of elements 0, 2 and 1, 3 */
        const uint32_t o1 = mn_pair16(off1), o2 = mn_pair16(off2 / 2);
        for (; i + 4 <= n; i += 4, a += 4, b += 4, out += 4) {
            const uint32_t av = mn_ld32(a), bv = mn_ld32(b);
            const int16x2_t a02 = __sxtab16(o1, av), a13 = mn_sxtab16_ror8(o1, av);
            int16x2_t b02 = __sxtab16(o2, bv), b13 = mn_sxtab16_ror8(o2, bv);
            b02 = __sadd16(b02, b02);
            b13 = __sadd16(b13, b13);
            const int32_t p0 = (int16_t)a02 * (int16_t)b02, p2 = (a02 >> 16) * (b02 >> 16);
            const int32_t p1 = (int16_t)a13 * (int16_t)b13, p3 = (a13 >> 16) * (b13 >> 16);
            const uint32_t v = mn_pack4(mn_sc_apply(&so, p0), mn_sc_apply(&so, p1), mn_sc_apply(&so, p2),
                                        mn_sc_apply(&so, p3), lo4, hi4);
            memcpy(out, &v, 4);
        }
    } else {
        for (; i + 4 <= n; i += 4, a += 4, out += 4) {
            const uint32_t v = mn_pack4(MN_MUL_ONE(0), MN_MUL_ONE(1), MN_MUL_ONE(2), MN_MUL_ONE(3), lo4, hi4);
            memcpy(out, &v, 4);
        }
    }
#endif
    for (; i < n; ++i, ++a, b += sb, ++out) *out = (int8_t)mn_clamp(MN_MUL_ONE(0), k->act_min, k->act_max);
#undef MN_MUL_ONE
}

static void mn_mul_fast_same(const mn_mul_k *k, const int8_t *a, const int8_t *b, int8_t *out, int32_t n) {
    mn_mul_fast(k, a, b, 1, out, n);
}
static void mn_mul_fast_scalar(const mn_mul_k *k, const int8_t *a, const int8_t *b, int8_t *out, int32_t n) {
    mn_mul_fast(k, a, b, 0, out, n);
}

static void mn_mul_fast_row(const void *pv, const int8_t *a, int32_t sa, const int8_t *b, int32_t sb, int8_t *out,
                            int32_t n) {
    const mn_mul_k *k = (const mn_mul_k *)pv;
    if (sa == 1 && sb == 1) mn_mul_fast_same(k, a, b, out, n);
    else if (sa == 1 && sb == 0) mn_mul_fast_scalar(k, a, b, out, n);
    else if (sa == 0 && sb == 1) mn_mul_fast_scalar(k + 1, b, a, out, n);
    else {
        for (int32_t i = 0; i < n; ++i) {
            const int32_t r = mn_sc_apply(&k->so, (a[(size_t)i * sa] + k->off1) * (2 * b[(size_t)i * sb] + k->off2));
            out[i] = (int8_t)mn_clamp(r, k->act_min, k->act_max);
        }
    }
}

void mn_mul_s8(const mn_mul_params *p, const int8_t *in1, const int8_t *in2, int8_t *output) {
    mn_mul_k k[2];
    /* |x + offset| <= 255 for int8 x and offsets (zero points) in int8 */
    if (p->input1_offset >= -127 && p->input1_offset <= 128 && p->input2_offset >= -127 &&
        p->input2_offset <= 128 && mn_sc_make(&k[0].so, p->output_multiplier, p->output_shift, p->output_offset,
                                              255 * 255)) {
        k[0].act_min = p->act_min;
        k[0].act_max = p->act_max;
        k[1] = k[0];
        k[0].off1 = p->input1_offset;
        k[0].off2 = 2 * p->input2_offset;
        k[1].off1 = p->input2_offset;
        k[1].off2 = 2 * p->input1_offset;
        mn_broadcast_rows(&p->shape, k, in1, in2, output, mn_mul_fast_row);
    } else {
        mn_broadcast_rows(&p->shape, p, in1, in2, output, mn_mul_row);
    }
}

/* TFLM ReluQuantized (RELU) and Relu6Quantized (RELU6, with the identity multiplier, which makes
 * mn_requantize return x exactly). */
void mn_relu_s8(const mn_relu_params *p, const int8_t *input, int8_t *output) {
    for (int32_t i = 0; i < p->size; ++i) {
        const int32_t y = p->output_zero_point +
                          mn_requantize((int32_t)input[i] - p->input_zero_point, p->multiplier, p->shift);
        output[i] = (int8_t)mn_clamp(y, p->act_min, p->act_max);
    }
}

/* TFLM reference_ops::Requantize, int8 -> int8 (its same-scale shortcut only applies between
 * int8 and uint8). */
void mn_quantize_s8(const mn_quantize_params *p, const int8_t *input, int8_t *output) {
    for (int32_t i = 0; i < p->size; ++i) {
        const int32_t y = mn_requantize((int32_t)input[i] - p->input_zero_point, p->multiplier, p->shift) +
                          p->output_zero_point;
        output[i] = (int8_t)mn_clamp(y, -128, 127);
    }
}

/* round(v) halves away from zero, as std::round, for |v| < 2^30 (the caller clamps): the
 * fraction v - trunc(v) is exact in float for such v, so no libm is needed. */
static int32_t mn_round_f32(float v) {
    int32_t t = (int32_t)v;
    const float frac = v - (float)t;
    if (frac >= 0.5f) ++t;
    if (frac <= -0.5f) --t;
    return t;
}

void mn_quantize_f32_s8(const float *input, int8_t *output, int32_t size, float scale, int32_t zero_point) {
    for (int32_t i = 0; i < size; ++i) {
        const float v = input[i] / scale;
        int32_t q;
        if (v != v) q = zero_point;            /* NaN: undefined in TFLM; the zero point here */
        else if (v >= 1073741824.0f) q = 127;  /* beyond int8 after any zero point */
        else if (v <= -1073741824.0f) q = -128;
        else q = mn_round_f32(v) + zero_point;
        output[i] = (int8_t)mn_clamp(q, -128, 127);
    }
}

/* scale * (q - zero_point): the exact product rounded once to float, as TFLM's double product
 * cast to float (|q - zero_point| <= 255 times a 24-bit significand is exact in both). */
void mn_dequantize_s8_f32(const int8_t *input, float *output, int32_t size, float scale, int32_t zero_point) {
    for (int32_t i = 0; i < size; ++i) output[i] = scale * (float)((int32_t)input[i] - zero_point);
}
