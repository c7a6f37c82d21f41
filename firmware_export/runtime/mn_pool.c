/* MEAN, AVERAGE_POOL_2D and MAX_POOL_2D (1-D over time), int8. */
#include "mn_internal.h"

/* TFLM's reference_ops::QuantizedMeanOrSum. The installed TFLM runs it for every int8 MEAN,
 * also when input and output quantisation are equal (older TFLM releases divided the raw sum
 * with truncation there instead). The sum of (q - input_zp) is rescaled by a multiplier that
 * already holds in_scale/out_scale and 1/reduce: the generator folds 1/reduce in exactly as
 * TFLM does at Eval time (multiplier << s / reduce, shift - s, s = floor(log2(reduce)) clamped),
 * so rounding matches bit for bit. */
void mn_mean_s8(const mn_mean_params *p, const int8_t *input, int8_t *output) {
    const int32_t zero_sum = p->input_zero_point * p->reduce;
    for (int32_t o = 0; o < p->outer; ++o) {
        const int8_t *in = input + (size_t)o * p->reduce * p->inner;
        int8_t *out = output + (size_t)o * p->inner;
        for (int32_t i = 0; i < p->inner; ++i) {
            int32_t sum = 0;
            for (int32_t r = 0; r < p->reduce; ++r) {
                sum += in[(size_t)r * p->inner + i];
            }
            const int32_t y = mn_requantize(sum - zero_sum, p->multiplier, p->shift) + p->output_zero_point;
            out[i] = (int8_t)mn_clamp(y, -128, 127);
        }
    }
}

/* Window of output step t, clipped to the input: taps [*k0, *k1) start at input index start. */
static int32_t mn_pool_window(const mn_pool_params *p, int32_t t, int32_t *k0, int32_t *k1) {
    const int32_t start = t * p->stride - p->pad_before;
    *k0 = start < 0 ? -start : 0;
    *k1 = p->in_len - start < p->filter ? p->in_len - start : p->filter;
    return start;
}

/* TFLM's reference_integer_ops::AveragePool: the raw int8 values are averaged (input and
 * output quantisation are equal), padding taps are not counted, and the quotient rounds half
 * away from zero ((acc +- count/2) / count with C truncation). The generator checks at export
 * time that every window holds at least one input. */
void mn_avgpool_s8(const mn_pool_params *p, const int8_t *input, int8_t *output) {
    for (int32_t t = 0; t < p->out_len; ++t) {
        int32_t k0, k1;
        const int32_t start = mn_pool_window(p, t, &k0, &k1);
        const int32_t count = k1 - k0;
        int8_t *out = output + (size_t)t * p->ch;
        for (int32_t c = 0; c < p->ch; ++c) {
            int32_t acc = 0;
            for (int32_t k = k0; k < k1; ++k) {
                acc += input[(size_t)(start + k) * p->ch + c];
            }
            acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
            out[c] = (int8_t)mn_clamp(acc, p->act_min, p->act_max);
        }
    }
}

/* TFLM's reference_integer_ops::MaxPool: max of the window's inputs (from -128), clamped. */
void mn_maxpool_s8(const mn_pool_params *p, const int8_t *input, int8_t *output) {
    for (int32_t t = 0; t < p->out_len; ++t) {
        int32_t k0, k1;
        const int32_t start = mn_pool_window(p, t, &k0, &k1);
        int8_t *out = output + (size_t)t * p->ch;
        for (int32_t c = 0; c < p->ch; ++c) {
            int32_t m = -128;
            for (int32_t k = k0; k < k1; ++k) {
                const int32_t v = input[(size_t)(start + k) * p->ch + c];
                if (v > m) m = v;
            }
            out[c] = (int8_t)mn_clamp(m, p->act_min, p->act_max);
        }
    }
}
