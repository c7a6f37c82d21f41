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

void mn_add_s8(const mn_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *output) {
    mn_broadcast_rows(&p->shape, p, in1, in2, output, mn_add_row);
}

/* TFLM MulElementwise: the offset product (|.| <= 255 * 255) requantised with the general
 * MultiplyByQuantizedMultiplier (the shift may be positive). */
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

void mn_mul_s8(const mn_mul_params *p, const int8_t *in1, const int8_t *in2, int8_t *output) {
    mn_broadcast_rows(&p->shape, p, in1, in2, output, mn_mul_row);
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
