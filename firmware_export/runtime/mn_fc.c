/* FULLY_CONNECTED int8, per-tensor or per-channel requantisation.
 * SIMD path: two weight rows per pass over the input (mn_dot_1x2_off), so each input word is
 * loaded and unpacked once for two outputs. */
#include "mn_internal.h"

void mn_fc_s8(const mn_fc_params *p, const int8_t *input, const int8_t *weights, const int32_t *bias,
              int8_t *output) {
    const int32_t nin = p->in_features, nout = p->out_features;
    const mn_rq rq_tensor = mn_rq_make(p->out_multiplier[0], p->out_shift[0], p->output_offset);
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
            if (p->per_channel) {
                const mn_rq rq0 = mn_rq_make(p->out_multiplier[o], p->out_shift[o], p->output_offset);
                const mn_rq rq1 = mn_rq_make(p->out_multiplier[o + 1], p->out_shift[o + 1], p->output_offset);
                out[o] = mn_rq_out(&rq0, a0, p->act_min, p->act_max);
                out[o + 1] = mn_rq_out(&rq1, a1, p->act_min, p->act_max);
            } else {
                out[o] = mn_rq_out(&rq_tensor, a0, p->act_min, p->act_max);
                out[o + 1] = mn_rq_out(&rq_tensor, a1, p->act_min, p->act_max);
            }
        }
#endif
        for (; o < nout; ++o) {
            int32_t acc = in_sum_off + mn_dot_s8(in, weights + (size_t)o * nin, nin, p->input_offset);
            if (bias) acc += bias[o];
            const mn_rq rq = p->per_channel ? mn_rq_make(p->out_multiplier[o], p->out_shift[o], p->output_offset) : rq_tensor;
            out[o] = mn_rq_out(&rq, acc, p->act_min, p->act_max);
        }
    }
}
