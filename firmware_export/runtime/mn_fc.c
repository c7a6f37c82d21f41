/* FULLY_CONNECTED int8, per-tensor or per-channel requantisation. */
#include "mn_internal.h"

void mn_fc_s8(const mn_fc_params *p, const int8_t *input, const int8_t *weights, const int32_t *bias,
              int8_t *output) {
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *in = input + (size_t)b * p->in_features;
        for (int32_t o = 0; o < p->out_features; ++o) {
            const int8_t *w = weights + (size_t)o * p->in_features;
            int32_t acc = mn_dot_s8(in, w, p->in_features, p->input_offset);
            if (p->filter_offset != 0) { /* int8 weights are symmetric; kept for completeness */
                for (int32_t i = 0; i < p->in_features; ++i) {
                    acc += ((int32_t)in[i] + p->input_offset) * p->filter_offset;
                }
            }
            if (bias) acc += bias[o];
            const int32_t q = p->per_channel ? o : 0;
            output[(size_t)b * p->out_features + o] = mn_requantize_s8(
                acc, p->out_multiplier[q], p->out_shift[q], p->output_offset, p->act_min, p->act_max);
        }
    }
}
