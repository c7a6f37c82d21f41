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

/* acc / count rounded half away from zero, as TFLM: (acc +- count/2) / count with C truncation
 * (the sign of acc picks +- half without a branch: (half ^ sign) - sign) */
static inline int32_t mn_div_round(int32_t acc, int32_t count, int32_t half) {
    const int32_t sign = acc >> 31;
    return (acc + ((half ^ sign) - sign)) / count;
}

#if MICRONAS_SIMD
#define MN_INLINE static inline __attribute__((always_inline))

/* the first r (1..4) bytes at p in the low lanes of a word, zeros above (no byte past p + r is
 * read); each caller passes a constant r */
MN_INLINE uint32_t mn_ld_lanes(const int8_t *p, int32_t r) {
    if (r == 4) return mn_ld32(p);
    if (r == 1) return (uint8_t)p[0];
    uint16_t h;
    memcpy(&h, p, 2);
    return r == 2 ? h : h | (uint32_t)(uint8_t)p[2] << 16;
}

/* the low r lanes of v to p */
MN_INLINE void mn_st_lanes(int8_t *p, uint32_t v, int32_t r) {
    if (r == 4) {
        memcpy(p, &v, 4);
    } else if (r == 1) {
        p[0] = (int8_t)v;
    } else {
        const uint16_t h = (uint16_t)v;
        memcpy(p, &h, 2);
        if (r == 3) p[2] = (int8_t)(v >> 16);
    }
}

/* r channels' rounded means over `count` taps `ch` bytes apart: two halfword pairs of sums
 * (SXTAB16; count <= 256 keeps |sum| <= 128 * 256 within int16), four divisions (lanes past r
 * are not computed), packed and clamped */
MN_INLINE uint32_t mn_avg_lanes(const int8_t *ip, int32_t ch, int32_t count, int32_t half, int32_t r, uint32_t lo4,
                                uint32_t hi4) {
    int16x2_t s02 = 0, s13 = 0; /* channels 0, 2 and 1, 3 */
    for (int32_t k = count; k > 0; --k, ip += ch) {
        const uint32_t v = mn_ld_lanes(ip, r);
        s02 = __sxtab16(s02, v);
        if (r > 1) s13 = mn_sxtab16_ror8(s13, v);
    }
    return mn_pack4(mn_div_round((int16_t)s02, count, half), r > 1 ? mn_div_round((int16_t)s13, count, half) : 0,
                    r > 2 ? mn_div_round(s02 >> 16, count, half) : 0,
                    r > 3 ? mn_div_round(s13 >> 16, count, half) : 0, lo4, hi4);
}

/* r channels' maxima: SSUB8 sets a lane's GE flag where the new byte is not below the maximum,
 * SEL takes it; then clamped lane-wise */
MN_INLINE uint32_t mn_max_lanes(const int8_t *ip, int32_t ch, int32_t count, int32_t r, uint32_t lo4, uint32_t hi4) {
    uint32_t m = 0x80808080u;
    for (int32_t k = count; k > 0; --k, ip += ch) {
        const uint32_t v = mn_ld_lanes(ip, r);
        (void)__ssub8(v, m);
        m = __sel(v, m);
    }
    return mn_clamp_s8x4(m, lo4, hi4);
}
#endif

/* TFLM's reference_integer_ops::AveragePool: the raw int8 values are averaged (input and
 * output quantisation are equal), padding taps are not counted, and the quotient rounds half
 * away from zero. The generator checks at export time that every window holds at least one
 * input. The SIMD build does four channels per word load (mn_avg_lanes), the ch % 4 last ones
 * with a 1-3 byte load, for windows of up to 256 taps (the halfword sums); longer windows and the
 * portable build take the scalar loop. */
void mn_avgpool_s8(const mn_pool_params *p, const int8_t *input, int8_t *output) {
    const int32_t ch = p->ch;
#if MICRONAS_SIMD
    const uint32_t lo4 = mn_bytes4(p->act_min), hi4 = mn_bytes4(p->act_max);
#endif
    for (int32_t t = 0; t < p->out_len; ++t) {
        int32_t k0, k1;
        const int32_t start = mn_pool_window(p, t, &k0, &k1);
        const int32_t count = k1 - k0, half = count / 2;
        const int8_t *row = input + (size_t)(start + k0) * ch; /* the window's first input step */
        int8_t *out = output + (size_t)t * ch;
        int32_t c = 0;
#if MICRONAS_SIMD
        if (count <= 256) {
            for (; c + 4 <= ch; c += 4) mn_st_lanes(out + c, mn_avg_lanes(row + c, ch, count, half, 4, lo4, hi4), 4);
            switch (ch - c) {
            case 1: mn_st_lanes(out + c, mn_avg_lanes(row + c, ch, count, half, 1, lo4, hi4), 1); break;
            case 2: mn_st_lanes(out + c, mn_avg_lanes(row + c, ch, count, half, 2, lo4, hi4), 2); break;
            case 3: mn_st_lanes(out + c, mn_avg_lanes(row + c, ch, count, half, 3, lo4, hi4), 3); break;
            default: break;
            }
            continue;
        }
#endif
        for (; c < ch; ++c) {
            int32_t acc = 0;
            const int8_t *ip = row + c;
            for (int32_t k = count; k > 0; --k, ip += ch) acc += *ip;
            out[c] = (int8_t)mn_clamp(mn_div_round(acc, count, half), p->act_min, p->act_max);
        }
    }
}

/* TFLM's reference_integer_ops::MaxPool: max of the window's inputs (from -128), clamped. The
 * SIMD build does four channels per word load (mn_max_lanes), the ch % 4 last ones with a 1-3
 * byte load. */
void mn_maxpool_s8(const mn_pool_params *p, const int8_t *input, int8_t *output) {
    const int32_t ch = p->ch;
#if MICRONAS_SIMD
    const uint32_t lo4 = mn_bytes4(p->act_min), hi4 = mn_bytes4(p->act_max);
#endif
    for (int32_t t = 0; t < p->out_len; ++t) {
        int32_t k0, k1;
        const int32_t start = mn_pool_window(p, t, &k0, &k1);
        const int32_t count = k1 - k0;
        const int8_t *row = input + (size_t)(start + k0) * ch;
        int8_t *out = output + (size_t)t * ch;
#if MICRONAS_SIMD
        int32_t c = 0;
        for (; c + 4 <= ch; c += 4) mn_st_lanes(out + c, mn_max_lanes(row + c, ch, count, 4, lo4, hi4), 4);
        switch (ch - c) {
        case 1: mn_st_lanes(out + c, mn_max_lanes(row + c, ch, count, 1, lo4, hi4), 1); break;
        case 2: mn_st_lanes(out + c, mn_max_lanes(row + c, ch, count, 2, lo4, hi4), 2); break;
        case 3: mn_st_lanes(out + c, mn_max_lanes(row + c, ch, count, 3, lo4, hi4), 3); break;
        default: break;
        }
#else
        for (int32_t c = 0; c < ch; ++c) {
            int32_t m = -128;
            const int8_t *ip = row + c;
            for (int32_t k = count; k > 0; --k, ip += ch) {
                if (*ip > m) m = *ip;
            }
            out[c] = (int8_t)mn_clamp(m, p->act_min, p->act_max);
        }
#endif
    }
}
