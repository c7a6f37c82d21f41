/* CONV_2D (1-D, grouped) and DEPTHWISE_CONV_2D (1-D), int8 per-channel. */
#include "mn_internal.h"

void mn_conv_s8(const mn_conv_params *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                int8_t *output) {
    const int32_t in_per_group = p->in_ch / p->groups;
    const int32_t out_per_group = p->out_ch / p->groups;
    const int32_t taps = p->kernel * in_per_group; /* filter elements per output channel */
    /* With one group and no dilation, the window of an interior output step is one contiguous
     * run of kernel * in_ch inputs matching the filter layout: a single long dot product. */
    const int contiguous = p->groups == 1 && p->dilation == 1;
    for (int32_t t = 0; t < p->out_len; ++t) {
        const int32_t start = t * p->stride - p->pad_before;
        const int interior = start >= 0 && start + (p->kernel - 1) * p->dilation < p->in_len;
        int8_t *out = output + (size_t)t * p->out_ch;
        for (int32_t o = 0; o < p->out_ch; ++o) {
            const int32_t g = o / out_per_group;
            const int8_t *w = filter + (size_t)o * taps;
            int32_t acc;
            if (contiguous && interior) {
                acc = mn_dot_s8(input + (size_t)start * p->in_ch, w, taps, p->input_offset);
            } else {
                acc = 0;
                for (int32_t k = 0; k < p->kernel; ++k) {
                    const int32_t x = start + k * p->dilation;
                    if (x < 0 || x >= p->in_len) continue; /* outside the input: skipped */
                    acc += mn_dot_s8(input + (size_t)x * p->in_ch + (size_t)g * in_per_group,
                                     w + (size_t)k * in_per_group, in_per_group, p->input_offset);
                }
            }
            if (bias) acc += bias[o];
            out[o] = mn_requantize_s8(acc, p->out_multiplier[o], p->out_shift[o], p->output_offset, p->act_min,
                                      p->act_max);
        }
    }
}

void mn_dwconv_s8(const mn_dwconv_params *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                  int8_t *output) {
    const int32_t out_ch = p->in_ch * p->depth_multiplier;
    for (int32_t t = 0; t < p->out_len; ++t) {
        const int32_t start = t * p->stride - p->pad_before;
        int8_t *out = output + (size_t)t * out_ch;
        for (int32_t c = 0; c < p->in_ch; ++c) {
            for (int32_t m = 0; m < p->depth_multiplier; ++m) {
                const int32_t o = c * p->depth_multiplier + m;
                int32_t acc = 0;
                for (int32_t k = 0; k < p->kernel; ++k) {
                    const int32_t x = start + k * p->dilation;
                    if (x < 0 || x >= p->in_len) continue;
                    acc += ((int32_t)input[(size_t)x * p->in_ch + c] + p->input_offset) *
                           (int32_t)filter[(size_t)k * out_ch + o];
                }
                if (bias) acc += bias[o];
                out[o] = mn_requantize_s8(acc, p->out_multiplier[o], p->out_shift[o], p->output_offset,
                                          p->act_min, p->act_max);
            }
        }
    }
}
