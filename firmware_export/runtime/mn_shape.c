/* PAD and STRIDED_SLICE (up to 4-D, int8): pure copies, the quantisation is unchanged. */
#include "mn_internal.h"

/* TFLM's reference_ops::Pad with a constant value (the output zero point unless the model
 * gives one). Shapes are right-aligned to 4-D by the generator; each innermost output row is
 * before-padding, the input row, after-padding. */
void mn_pad_s8(const mn_pad_params *p, const int8_t *input, int8_t *output) {
    int32_t out_dims[4];
    for (int d = 0; d < 4; ++d) out_dims[d] = p->pad_before[d] + p->in_dims[d] + p->pad_after[d];
    const int8_t value = (int8_t)p->pad_value;
    const size_t row = (size_t)out_dims[3];
    int8_t *out = output;
    for (int32_t i0 = 0; i0 < out_dims[0]; ++i0) {
        const int32_t x0 = i0 - p->pad_before[0];
        for (int32_t i1 = 0; i1 < out_dims[1]; ++i1) {
            const int32_t x1 = i1 - p->pad_before[1];
            for (int32_t i2 = 0; i2 < out_dims[2]; ++i2, out += row) {
                const int32_t x2 = i2 - p->pad_before[2];
                if (x0 < 0 || x0 >= p->in_dims[0] || x1 < 0 || x1 >= p->in_dims[1] || x2 < 0 ||
                    x2 >= p->in_dims[2]) {
                    memset(out, value, row);
                    continue;
                }
                const size_t at = (((size_t)x0 * p->in_dims[1] + (size_t)x1) * p->in_dims[2] + (size_t)x2) *
                                  p->in_dims[3];
                memset(out, value, (size_t)p->pad_before[3]);
                memcpy(out + p->pad_before[3], input + at, (size_t)p->in_dims[3]);
                memset(out + p->pad_before[3] + p->in_dims[3], value, (size_t)p->pad_after[3]);
            }
        }
    }
}

/* TFLM's reference_ops::StridedSlice: the generator resolves masks, negative indices and
 * clamping (StartForAxis / StopForAxis) into a first index and a step per axis (the step may be
 * negative); shrunk axes are kept here as size-1 axes. Output is written in order. */
void mn_strided_slice_s8(const mn_slice_params *p, const int8_t *input, int8_t *output) {
    int8_t *out = output;
    for (int32_t i0 = 0; i0 < p->out_dims[0]; ++i0) {
        const int32_t a0 = (p->begin[0] + i0 * p->step[0]) * p->in_strides[0];
        for (int32_t i1 = 0; i1 < p->out_dims[1]; ++i1) {
            const int32_t a1 = a0 + (p->begin[1] + i1 * p->step[1]) * p->in_strides[1];
            for (int32_t i2 = 0; i2 < p->out_dims[2]; ++i2) {
                const int32_t a2 = a1 + (p->begin[2] + i2 * p->step[2]) * p->in_strides[2];
                if (p->step[3] == 1) { /* contiguous innermost run */
                    memcpy(out, input + a2 + p->begin[3], (size_t)p->out_dims[3]);
                    out += p->out_dims[3];
                    continue;
                }
                for (int32_t i3 = 0; i3 < p->out_dims[3]; ++i3) {
                    *out++ = input[a2 + (p->begin[3] + i3 * p->step[3]) * p->in_strides[3]];
                }
            }
        }
    }
}

/* TFLM's CONCATENATION of int8 tensors copies raw values (its int8 Eval does not requantise; the
 * converter gives every input the output's quantisation). Each output row is the inputs' rows
 * in order. */
void mn_concat_s8(const mn_concat_params *p, const int8_t *const *inputs, int8_t *output) {
    int8_t *out = output;
    for (int32_t r = 0; r < p->outer; ++r) {
        for (int32_t k = 0; k < p->count; ++k) {
            const size_t n = (size_t)p->in_rows[k];
            memcpy(out, inputs[k] + (size_t)r * n, n);
            out += n;
        }
    }
}
