/* FULLY_CONNECTED int8, per-tensor or per-channel requantisation.
 * SIMD path: two weight rows per pass over the input (mn_dot_1x2_off), so each input word is
 * loaded and unpacked once for two outputs. */
#include "mn_internal.h"

#if MICRONAS_SIMD
/* One requantised output of the aggregation FC, from its accumulator. */
#define MN_AGG_OUT(acc) __ssat(mn_rq_fast((acc), q->mult, q->rhi, q->sh), 8)
#define MN_AGG_B(i) (bias ? bias[o + (i)] : 0)

/* The DY-Conv aggregation (dyagg): a K-vector of attention weights (K = 2 or 4) times K expert
 * kernels stacked in the rows of `weights`, giving ~K*Cout*Cin*k outputs. Two MACs per output,
 * so the per-output requantisation is the cost: per-tensor (one constant set in registers), the
 * fast form, four outputs stored as one word with one clamp. No filter offset; no bias as
 * exported (firmware_export.dyagg), a bias as BENCH_OP passes one (inlined twice: the model's
 * call runs the copy without it). in02 / in13: inputs 0, 2 / 1, 3 plus the input offset, as
 * halfword pairs. */
__attribute__((always_inline)) static inline void fc_aggregate(const mn_fc_params *p, const mn_rq *q,
                                                               uint32_t in02, uint32_t in13, const int8_t *w,
                                                               const int32_t *bias, int8_t *out) {
    const int32_t nout = p->out_features;
    const uint32_t lo4 = 0x01010101u * (uint8_t)p->act_min, hi4 = 0x01010101u * (uint8_t)p->act_max;
    int32_t o = 0;
    if (p->in_features == 4) { /* one weight word per output: (w0 w2) . (x0 x2) + (w1 w3) . (x1 x3) */
        const int8_t *wp = w;
        for (; o + 4 <= nout; o += 4, wp += 16, out += 4) {
            const uint32_t w0 = mn_ld32(wp), w1 = mn_ld32(wp + 4), w2 = mn_ld32(wp + 8), w3 = mn_ld32(wp + 12);
            uint32_t v = (uint32_t)MN_AGG_OUT(__smlad(mn_sxtb16_ror8(w0), in13, __smlad(__sxtb16(w0), in02, MN_AGG_B(0))));
            MN_BFI8(v, MN_AGG_OUT(__smlad(mn_sxtb16_ror8(w1), in13, __smlad(__sxtb16(w1), in02, MN_AGG_B(1)))), 8);
            MN_BFI8(v, MN_AGG_OUT(__smlad(mn_sxtb16_ror8(w2), in13, __smlad(__sxtb16(w2), in02, MN_AGG_B(2)))), 16);
            MN_BFI8(v, MN_AGG_OUT(__smlad(mn_sxtb16_ror8(w3), in13, __smlad(__sxtb16(w3), in02, MN_AGG_B(3)))), 24);
            v = mn_clamp_s8x4(v, lo4, hi4);
            memcpy(out, &v, 4);
        }
        w = wp;
    } else { /* K = 2: one weight word per two outputs, (w0 of row o, w0 of row o+1) and (w1, w1) */
        const int8_t *wp = w;
        const uint32_t xa = in02 & 0xFFFFu, xb = in13 & 0xFFFFu; /* x0, x1 in the bottom halves */
        for (; o + 4 <= nout; o += 4, wp += 8, out += 4) {
            const uint32_t wa = mn_ld32(wp), wb = mn_ld32(wp + 4);
            const int16x2_t a02 = __sxtb16(wa), a13 = mn_sxtb16_ror8(wa); /* (o w0, o+1 w0), (o w1, o+1 w1) */
            const int16x2_t b02 = __sxtb16(wb), b13 = mn_sxtb16_ror8(wb);
            uint32_t v = (uint32_t)MN_AGG_OUT(__smlabb(a13, xb, __smlabb(a02, xa, MN_AGG_B(0))));
            MN_BFI8(v, MN_AGG_OUT(__smlatb(a13, xb, __smlatb(a02, xa, MN_AGG_B(1)))), 8);
            MN_BFI8(v, MN_AGG_OUT(__smlabb(b13, xb, __smlabb(b02, xa, MN_AGG_B(2)))), 16);
            MN_BFI8(v, MN_AGG_OUT(__smlatb(b13, xb, __smlatb(b02, xa, MN_AGG_B(3)))), 24);
            v = mn_clamp_s8x4(v, lo4, hi4);
            memcpy(out, &v, 4);
        }
        w = wp;
    }
    const int32_t x0 = (int16_t)(in02 & 0xFFFFu), x2 = (int16_t)(in02 >> 16);
    const int32_t x1 = (int16_t)(in13 & 0xFFFFu), x3 = (int16_t)(in13 >> 16);
    for (; o < nout; ++o, w += p->in_features) { /* the last outputs (nout not a multiple of 4) */
        int32_t acc = (bias ? bias[o] : 0) + w[0] * x0 + w[1] * x1;
        if (p->in_features == 4) acc += w[2] * x2 + w[3] * x3;
        *out++ = (int8_t)mn_clamp(mn_rq_fast(acc, q->mult, q->rhi, q->sh), p->act_min, p->act_max);
    }
}
#endif

/* output o's requantisation (per channel or per tensor), bounded by its bias and fan-in */
__attribute__((always_inline)) static inline mn_rq fc_rq(const mn_fc_params *p, const int32_t *bias, int32_t o) {
    const int32_t c = p->per_channel ? o : 0;
    return mn_rq_make_acc(p->out_multiplier[c], p->out_shift[c], p->output_offset, bias ? bias[o] : 0,
                          p->in_features);
}

void mn_fc_s8(const mn_fc_params *p, const int8_t *input, const int8_t *weights, const int32_t *bias,
              int8_t *output) {
    const int32_t nin = p->in_features, nout = p->out_features;
#if MICRONAS_SIMD
    const mn_rq rq_tensor = mn_rq_make(p->out_multiplier[0], p->out_shift[0], p->output_offset);
    if ((nin == 2 || nin == 4) && !p->per_channel && p->filter_offset == 0 && rq_tensor.sh >= 0) {
        for (int32_t b = 0; b < p->batches; ++b) {
            const int8_t *in = input + (size_t)b * nin;
            const int32_t x0 = in[0] + p->input_offset, x1 = in[1] + p->input_offset;
            const int32_t x2 = nin == 4 ? in[2] + p->input_offset : 0, x3 = nin == 4 ? in[3] + p->input_offset : 0;
            const uint32_t in02 = ((uint32_t)x0 & 0xFFFFu) | ((uint32_t)x2 << 16);
            const uint32_t in13 = ((uint32_t)x1 & 0xFFFFu) | ((uint32_t)x3 << 16);
            if (bias)
                fc_aggregate(p, &rq_tensor, in02, in13, weights, bias, output + (size_t)b * nout);
            else
                fc_aggregate(p, &rq_tensor, in02, in13, weights, NULL, output + (size_t)b * nout);
        }
        return;
    }
#endif
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *in = input + (size_t)b * nin;
        int8_t *out = output + (size_t)b * nout;
        /* filter_offset: int8 weights are symmetric (0); kept for completeness */
        int32_t in_sum_off = 0;
        if (p->filter_offset != 0) {
            for (int32_t i = 0; i < nin; ++i) in_sum_off += ((int32_t)in[i] + p->input_offset) * p->filter_offset;
        }
        int32_t o = 0;
#if MICRONAS_SIMD
        for (; o + 2 <= nout; o += 2) {
            int32_t a0 = in_sum_off, a1 = in_sum_off;
            if (bias) {
                a0 += bias[o];
                a1 += bias[o + 1];
            }
            mn_dot_1x2_off(in, weights + (size_t)o * nin, nin, nin, p->input_offset, &a0, &a1);
            const mn_rq rq0 = fc_rq(p, bias, o), rq1 = fc_rq(p, bias, o + 1);
            out[o] = mn_rq_out(&rq0, a0, p->act_min, p->act_max);
            out[o + 1] = mn_rq_out(&rq1, a1, p->act_min, p->act_max);
        }
#endif
        for (; o < nout; ++o) {
            int32_t acc = in_sum_off + mn_dot_s8(in, weights + (size_t)o * nin, nin, p->input_offset);
            if (bias) acc += bias[o];
            const mn_rq rq = fc_rq(p, bias, o);
            out[o] = mn_rq_out(&rq, acc, p->act_min, p->act_max);
        }
    }
}
