/*
 * micronas int8 runtime: interpreter-free kernels called by generated model code.
 *
 * Arithmetic follows TensorFlow Lite Micro's int8 reference kernels (fixed-point multiplier and
 * shift with gemmlowp rounding, zero points, activation clamps), so outputs are bit-exact with
 * them. Every scale-dependent constant (multipliers, shifts, offsets, clamps) is computed by the
 * code generator at export time and passed in a const params struct: there is no floating point
 * and no allocation in the inference path.
 *
 * Layout: activations are channel-last, as TFLite stores them. A 1-D tensor of T steps and
 * C channels is [T][C] (element t*C + c). Convolution filters are [out][k][in/groups].
 *
 * C99. Define MICRONAS_NO_SIMD to force the portable path on cores with the DSP extension.
 */
#ifndef MICRONAS_RUNTIME_H_
#define MICRONAS_RUNTIME_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MICRONAS_RUNTIME_VERSION "1"

#if defined(__ARM_FEATURE_DSP) && (__ARM_FEATURE_DSP == 1) && !defined(MICRONAS_NO_SIMD)
#define MICRONAS_SIMD 1
#else
#define MICRONAS_SIMD 0
#endif

/* ---- fixed-point helpers (TFLite/gemmlowp semantics) ------------------------------------ */

/* gemmlowp's SaturatingRoundingDoublingHighMul: (a*b + nudge) / 2^31 truncated toward zero, nudge
 * 2^30 for a*b >= 0 and 1 - 2^30 below; saturates the one overflowing case (INT32_MIN * INT32_MIN).
 * For a negative numerator, truncation is floor((n + 2^31 - 1) / 2^31), and n + 2^31 - 1 is
 * again a*b + 2^30: both cases are floor((a*b + 2^30) / 2^31), an arithmetic shift (SMULL, ADDS,
 * ADC and two shifts on Arm; no 64-bit division sequence). */
static inline int32_t mn_sat_round_doubling_high_mul(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    return (int32_t)(((int64_t)a * (int64_t)b + (1LL << 30)) >> 31);
}

/* x / 2^exponent, rounding half away from zero. */
static inline int32_t mn_rounding_divide_by_pot(int32_t x, int exponent) {
    int32_t mask = (int32_t)((1LL << exponent) - 1);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* x * multiplier * 2^shift, multiplier a Q31 value in [0.5, 1): TFLite's default (double
 * rounding) MultiplyByQuantizedMultiplier. */
static inline int32_t mn_requantize(int32_t x, int32_t multiplier, int32_t shift) {
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    return mn_rounding_divide_by_pot(mn_sat_round_doubling_high_mul((int32_t)((uint32_t)x << left), multiplier),
                                     right);
}

static inline int32_t mn_clamp(int32_t x, int32_t lo, int32_t hi) {
    return x < lo ? lo : (x > hi ? hi : x);
}

/* ---- kernels --------------------------------------------------------------------------- */

/* CONV_2D used as a 1-D convolution, also grouped (groups = in_ch / filter input depth).
 * input [in_len][in_ch], filter [out_ch][kernel][in_ch/groups], bias [out_ch] (or NULL),
 * output [out_len][out_ch]. Taps outside the input are skipped (TFLite padding semantics). */
typedef struct {
    int32_t in_len, in_ch, out_len, out_ch;
    int32_t kernel, stride, dilation, pad_before, groups;
    int32_t input_offset;  /* -input zero point */
    int32_t output_offset; /* +output zero point */
    int32_t act_min, act_max;
    const int32_t *out_multiplier; /* [out_ch] */
    const int32_t *out_shift;      /* [out_ch] */
} mn_conv_params;
void mn_conv_s8(const mn_conv_params *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                int8_t *output);

/* DEPTHWISE_CONV_2D as 1-D: output channel c*depth_multiplier + m reads input channel c.
 * filter [kernel][in_ch*depth_multiplier], output [out_len][in_ch*depth_multiplier]. */
typedef struct {
    int32_t in_len, in_ch, out_len, depth_multiplier;
    int32_t kernel, stride, dilation, pad_before;
    int32_t input_offset, output_offset;
    int32_t act_min, act_max;
    const int32_t *out_multiplier, *out_shift; /* [in_ch*depth_multiplier] */
} mn_dwconv_params;
void mn_dwconv_s8(const mn_dwconv_params *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                  int8_t *output);

/* FULLY_CONNECTED: input [batches][in_features], weights [out_features][in_features].
 * per_channel != 0: out_multiplier/out_shift have out_features entries, else one.
 * has_bias: whether the call passes a bias (the kernel reads the pointer; the field keys the
 * latency table: dyagg's aggregation FC has none, and BENCH_OP then passes none either). */
typedef struct {
    int32_t batches, in_features, out_features;
    int32_t input_offset, filter_offset, output_offset;
    int32_t act_min, act_max;
    int32_t per_channel, has_bias;
    const int32_t *out_multiplier, *out_shift;
} mn_fc_params;
void mn_fc_s8(const mn_fc_params *p, const int8_t *input, const int8_t *weights, const int32_t *bias,
              int8_t *output);

/* MEAN over the middle axis of [outer][reduce][inner] -> [outer][inner], as TFLM's
 * QuantizedMeanOrSum (used for every int8 MEAN, equal quantisation included; see mn_pool.c). */
typedef struct {
    int32_t outer, reduce, inner;
    int32_t input_zero_point, output_zero_point;
    int32_t multiplier, shift; /* in_scale/out_scale with 1/reduce folded in, as TFLM folds it */
} mn_mean_params;
void mn_mean_s8(const mn_mean_params *p, const int8_t *input, int8_t *output);

/* AVERAGE_POOL_2D / MAX_POOL_2D as 1-D: input [in_len][ch] -> [out_len][ch]. */
typedef struct {
    int32_t in_len, ch, out_len;
    int32_t filter, stride, pad_before;
    int32_t act_min, act_max;
} mn_pool_params;
void mn_avgpool_s8(const mn_pool_params *p, const int8_t *input, int8_t *output);
void mn_maxpool_s8(const mn_pool_params *p, const int8_t *input, int8_t *output);

/* Broadcasting shapes for binary elementwise ops: out_dims is 4-D; in1_strides/in2_strides
 * are element strides per output dimension, 0 where that input is broadcast. */
typedef struct {
    int32_t out_dims[4];
    int32_t in1_strides[4], in2_strides[4];
} mn_broadcast;

/* ADD: TFLite's left-shift-20 int8 add. */
typedef struct {
    mn_broadcast shape;
    int32_t input1_offset, input2_offset, output_offset;
    int32_t left_shift;
    int32_t input1_multiplier, input1_shift;
    int32_t input2_multiplier, input2_shift;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
} mn_add_params;
void mn_add_s8(const mn_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *output);

/* MUL: (in1 + off1) * (in2 + off2) requantised. */
typedef struct {
    mn_broadcast shape;
    int32_t input1_offset, input2_offset, output_offset;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
} mn_mul_params;
void mn_mul_s8(const mn_mul_params *p, const int8_t *in1, const int8_t *in2, int8_t *output);

/* SOFTMAX over the last axis of [outer][depth]; int8 output with scale 1/256, zero point -128. */
typedef struct {
    int32_t outer, depth;
    int32_t input_multiplier, input_left_shift;
    int32_t diff_min;
} mn_softmax_params;
void mn_softmax_s8(const mn_softmax_params *p, const int8_t *input, int8_t *output);

/* LOGISTIC elementwise; int8 output with scale 1/256, zero point -128. */
typedef struct {
    int32_t size;
    int32_t input_zero_point, input_range_radius;
    int32_t input_multiplier, input_left_shift;
} mn_logistic_params;
void mn_logistic_s8(const mn_logistic_params *p, const int8_t *input, int8_t *output);

/* PAD (4-D, constant value) and STRIDED_SLICE (4-D, resolved begin and step): copies. */
typedef struct {
    int32_t in_dims[4];
    int32_t pad_before[4], pad_after[4];
    int32_t pad_value;
} mn_pad_params;
void mn_pad_s8(const mn_pad_params *p, const int8_t *input, int8_t *output);

typedef struct {
    int32_t out_dims[4];
    int32_t in_strides[4]; /* element strides of the input per dimension */
    int32_t begin[4], step[4];
} mn_slice_params;
void mn_strided_slice_s8(const mn_slice_params *p, const int8_t *input, int8_t *output);

/* RELU and RELU6 (one kernel): out = clamp(output_zero_point + requantize(x - input_zero_point),
 * act_min, act_max). TFLM's RELU requantises (ReluQuantized); its RELU6 clamps the raw input to
 * [zero, six] of the input quantisation, which is this with the identity multiplier (2^30, 1) and
 * zero offsets. */
typedef struct {
    int32_t size;
    int32_t input_zero_point, output_zero_point;
    int32_t multiplier, shift;
    int32_t act_min, act_max;
} mn_relu_params;
void mn_relu_s8(const mn_relu_params *p, const int8_t *input, int8_t *output);

/* QUANTIZE int8 -> int8 (TFLM's reference_ops::Requantize): clamp(requantize(x - input_zero_point)
 * + output_zero_point) to int8. */
typedef struct {
    int32_t size;
    int32_t input_zero_point, output_zero_point;
    int32_t multiplier, shift;
} mn_quantize_params;
void mn_quantize_s8(const mn_quantize_params *p, const int8_t *input, int8_t *output);

/* TANH elementwise; int8 output with scale 1/128, zero point 0 (TFLM reference_integer_ops::Tanh). */
typedef struct {
    int32_t size;
    int32_t input_zero_point, input_range_radius;
    int32_t input_multiplier, input_left_shift;
} mn_tanh_params;
void mn_tanh_s8(const mn_tanh_params *p, const int8_t *input, int8_t *output);

/* HARD_SWISH elementwise (TFLM reference_ops::HardSwish<int8_t>): 16-bit fixed-point multipliers
 * (Q15 significands in int32 fields) and their exponents, as TFLM's Prepare computes them. */
typedef struct {
    int32_t size;
    int32_t input_zero_point, output_zero_point;
    int32_t reluish_multiplier, reluish_exponent;
    int32_t output_multiplier, output_exponent;
} mn_hard_swish_params;
void mn_hard_swish_s8(const mn_hard_swish_params *p, const int8_t *input, int8_t *output);

/* CONCATENATION (TFLM copies int8 inputs unchanged): `outer` rows; row r of the output is row r of
 * each input in turn, input k's row being in_rows[k] bytes (the product of its dimensions from the
 * axis on). inputs[count]: the input tensors. */
#define MN_CONCAT_MAX_INPUTS 10 /* TFLM's kMaxInputNum */
typedef struct {
    int32_t outer, count, out_row;
    const int32_t *in_rows; /* [count] */
} mn_concat_params;
void mn_concat_s8(const mn_concat_params *p, const int8_t *const *inputs, int8_t *output);

/* A fused DY-Conv / KernelDNA chain (the code generator recognises it; no TFLite builtin):
 * `experts` CONV_2D of one input and one geometry, each output scaled by an attention value
 * (MUL), summed by a chain of experts - 1 ADD, computed as those ops compute it, every
 * intermediate int8 rounding included, without their intermediate tensors (mn_fused.c).
 * filters [experts][out_ch][kernel][in_ch/groups], biases [experts][out_ch] (or NULL),
 * attention: expert e scales channel o by attention[quant[e][0] + o * att_stride],
 * output [out_len][out_ch]. quant[e]: MN_FUSED_QUANT int32 per expert, in this order: attention
 * index; conv output offset, act_min, act_max; MUL conv-side offset, attention-side offset,
 * output offset, multiplier, shift, act_min, act_max; ADD (experts after the first) running-sum
 * offset, this expert's offset, output offset, left shift, running-sum multiplier and shift,
 * this expert's multiplier and shift, output multiplier and shift, act_min, act_max. */
#define MN_FUSED_QUANT 23
typedef struct {
    int32_t in_len, in_ch, out_len, out_ch;
    int32_t kernel, stride, dilation, pad_before, groups;
    int32_t experts;    /* K >= 1 (1: conv -> MUL, KernelDNA's attention) */
    int32_t att_stride; /* 0: one attention value per expert (DY-Conv), 1: one per output channel */
    int32_t input_offset;
    int32_t filter_stride; /* int8 elements from one expert's filter to the next: out_ch * kernel *
                            * in_ch/groups (0: every expert reads the first; BENCH_OP, to time wide
                            * layers in little memory: the cost does not depend on the weights) */
    const int32_t *quant;          /* [experts][MN_FUSED_QUANT] */
    const int32_t *out_multiplier; /* [experts][out_ch]: the convs' requantisation */
    const int32_t *out_shift;      /* [experts][out_ch] */
} mn_conv_mul_add_params;
void mn_conv_mul_add_s8(const mn_conv_mul_add_params *p, const int8_t *input, const int8_t *filters,
                        const int32_t *biases, const int8_t *attention, int8_t *output);
/* QUANTIZE float32 -> int8 and DEQUANTIZE int8 -> float32 at the model's edges (TFLM's
 * AffineQuantize and Dequantize): q = clamp(round(x / scale) + zero_point), halves away from
 * zero, x / scale in float; x = scale * (q - zero_point) in float. */
void mn_quantize_f32_s8(const float *input, int8_t *output, int32_t size, float scale, int32_t zero_point);
void mn_dequantize_s8_f32(const int8_t *input, float *output, int32_t size, float scale, int32_t zero_point);

#ifdef __cplusplus
}
#endif

#endif /* MICRONAS_RUNTIME_H_ */
