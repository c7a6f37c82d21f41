/* SOFTMAX and LOGISTIC, int8 -> int8 with output scale 1/256 and zero point -128.
 *
 * Both mirror TFLM's reference integer paths (no lookup table for int8 -> int8):
 *   SOFTMAX  tflite::micro::reference_ops::Softmax<int8_t, int8_t> (reference/softmax.h)
 *   LOGISTIC tflite::micro::reference_integer_ops::Logistic (reference/integer_ops/logistic.h)
 * built on the gemmlowp fixed-point maths that TFLM carries as kernels/internal/fixedpoint.h.
 * "Qm" below means a signed 32-bit value with m integer bits and 31 - m fractional bits
 * (gemmlowp FixedPoint<int32_t, m>); Q0 values lie in [-1, 1) and Q0 "one" is INT32_MAX.
 */
#include "mn_internal.h"

#define MN_Q0_ONE INT32_MAX

/* gemmlowp SaturatingRoundingMultiplyByPOT<e> for e > 0: x * 2^e, saturated to int32. */
static int32_t mn_sat_shl(int32_t x, int e) {
    const int32_t threshold = (int32_t)((1LL << (31 - e)) - 1);
    if (x > threshold) return INT32_MAX;
    if (x < -threshold) return INT32_MIN;
    return (int32_t)((uint32_t)x << e);
}

/* gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl: a in [-1/4, 0), Q0 ->
 * exp(a), Q0. Taylor expansion around -1/8 to the 4th order. */
static int32_t mn_exp_quarter(int32_t a) {
    const int32_t exp_minus_one_eighth = 1895147668; /* exp(-1/8), Q0 */
    const int32_t one_third = 715827883;             /* 1/3, Q0 */
    const int32_t x = a + (1 << 28);                 /* x = a + 1/8, Q0 */
    const int32_t x2 = mn_sat_round_doubling_high_mul(x, x);
    const int32_t x3 = mn_sat_round_doubling_high_mul(x2, x);
    const int32_t x4 = mn_sat_round_doubling_high_mul(x2, x2);
    const int32_t x4_over_4 = mn_rounding_divide_by_pot(x4, 2);
    /* x^4/24 + x^3/6 + x^2/2 = ((x^4/4 + x^3) / 3 + x^2) / 2 */
    const int32_t poly = mn_rounding_divide_by_pot(
        mn_sat_round_doubling_high_mul(x4_over_4 + x3, one_third) + x2, 1);
    return exp_minus_one_eighth + mn_sat_round_doubling_high_mul(exp_minus_one_eighth, x + poly);
}

/* gemmlowp exp_on_negative_values: a <= 0 in Q(int_bits) (int_bits <= 5 here) -> exp(a), Q0.
 * exp(a mod 1/4 - 1/4) by the polynomial, then one multiplier exp(-2^k) per set bit k of the
 * remaining multiple of 1/4 (the "barrel shifter"). */
static int32_t mn_exp_on_negative_values(int32_t a, int int_bits) {
    static const int32_t exp_minus_pot[7] = {/* exp(-2^k) in Q0 for k = -2 .. 4 */
                                             1672461947, 1302514674, 790015084, 290630308,
                                             39332535,   720401,     242};
    const int frac_bits = 31 - int_bits;
    const int32_t quarter = (int32_t)1 << (frac_bits - 2);
    const int32_t a_mod_quarter_minus_quarter = (a & (quarter - 1)) - quarter; /* [-1/4, 0) */
    const int32_t remainder = a_mod_quarter_minus_quarter - a;                 /* >= 0 */
    /* Rescale<0>: Q(int_bits) -> Q0 */
    int32_t result = mn_exp_quarter(mn_sat_shl(a_mod_quarter_minus_quarter, int_bits));
    for (int k = -2; k <= 4; ++k) {
        if (int_bits > k && (remainder & ((int32_t)1 << (frac_bits + k)))) {
            result = mn_sat_round_doubling_high_mul(result, exp_minus_pot[k + 2]);
        }
    }
    /* (gemmlowp's clamp to 0 below -32 only applies with more than 5 integer bits) */
    return a == 0 ? MN_Q0_ONE : result;
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1: a in [0, 1), Q0 -> 1 / (1 + a), Q0.
 * Three Newton-Raphson steps on the half denominator, in Q2. */
static int32_t mn_one_over_one_plus_x(int32_t a) {
    /* RoundingHalfSum(a, 1): (a + 1) / 2, Q0, in [1/2, 1) */
    const int32_t half_denominator = (int32_t)(((int64_t)a + MN_Q0_ONE + 1) / 2);
    const int32_t q2_one = 1 << 29;
    const int32_t c48_over_17 = 1515870810, c_minus_32_over_17 = -1010580540; /* Q2 */
    int32_t x = c48_over_17 + mn_sat_round_doubling_high_mul(half_denominator, c_minus_32_over_17); /* Q2 */
    for (int i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = mn_sat_round_doubling_high_mul(half_denominator, x); /* Q2 */
        const int32_t one_minus = q2_one - half_denominator_times_x;                                  /* Q2 */
        x = x + mn_sat_shl(mn_sat_round_doubling_high_mul(x, one_minus), 2); /* Q4 -> Rescale<2> */
    }
    return mn_sat_shl(x, 1); /* x / 2 as Q1 (ExactMulByPot<-1>), Rescale<0> -> Q0 */
}

/* gemmlowp logistic: a in Q4 -> 1 / (1 + exp(-a)), Q0. */
static int32_t mn_logistic_q4(int32_t a) {
    if (a == 0) return 1 << 30; /* 1/2 */
    const int32_t abs_a = a > 0 ? a : -a;
    const int32_t positive = mn_one_over_one_plus_x(mn_exp_on_negative_values(-abs_a, 4));
    return a > 0 ? positive : MN_Q0_ONE - positive;
}

/* TFLite's GetReciprocal: x > 0 in Q(x_integer_bits) -> 2^num_bits_over_unit / x in Q0
 * (x = m * 2^num_bits_over_unit with m in [1, 2); returns 1 / m). */
static int32_t mn_reciprocal(int32_t x, int x_integer_bits, int *num_bits_over_unit) {
    int headroom_plus_one = 0;
    while (!(((uint32_t)x << headroom_plus_one) & 0x80000000u)) ++headroom_plus_one; /* x > 0 */
    *num_bits_over_unit = x_integer_bits - headroom_plus_one;
    /* x normalised to [1, 2), minus one: Q0 in [0, 1) */
    const int32_t shifted_minus_one = (int32_t)(((uint32_t)x << headroom_plus_one) - 0x80000000u);
    return mn_one_over_one_plus_x(shifted_minus_one);
}

void mn_softmax_s8(const mn_softmax_params *p, const int8_t *input, int8_t *output) {
    enum { kScaledDiffIntegerBits = 5, kAccumulationIntegerBits = 12 };
    for (int32_t i = 0; i < p->outer; ++i) {
        const int8_t *x = input + (size_t)i * p->depth;
        int8_t *y = output + (size_t)i * p->depth;
        int32_t max_in_row = -128;
        for (int32_t c = 0; c < p->depth; ++c) max_in_row = x[c] > max_in_row ? x[c] : max_in_row;

        /* sum of exp(beta * scale * diff), Q12 */
        int32_t sum_of_exps = 0;
        for (int32_t c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= p->diff_min) {
                /* MultiplyByQuantizedMultiplierGreaterThanOne: diff * beta * scale in Q5 */
                const int32_t scaled = mn_requantize(diff, p->input_multiplier, p->input_left_shift);
                /* Rescale<12>: Q0 -> Q12 */
                sum_of_exps += mn_rounding_divide_by_pot(mn_exp_on_negative_values(scaled, kScaledDiffIntegerBits),
                                                         kAccumulationIntegerBits);
            }
        }
        int num_bits_over_unit;
        const int32_t shifted_scale = mn_reciprocal(sum_of_exps, kAccumulationIntegerBits, &num_bits_over_unit);
        /* exp * (1/sum) in Q0 -> units of 1/256: shift right by 31 - 8 plus the reciprocal's scale.
         * In [23, 31] (TFLM CHECKs it) since the exporter limits depth to 511 (sum < 2^28). */
        const int exponent = num_bits_over_unit + 31 - 8;

        for (int32_t c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled = mn_requantize(diff, p->input_multiplier, p->input_left_shift);
                const int32_t exp_in_0 = mn_exp_on_negative_values(scaled, kScaledDiffIntegerBits);
                const int32_t unsat = mn_rounding_divide_by_pot(
                    mn_sat_round_doubling_high_mul(shifted_scale, exp_in_0), exponent);
                y[c] = (int8_t)mn_clamp(unsat - 128, -128, 127);
            } else {
                y[c] = -128;
            }
        }
    }
}

void mn_logistic_s8(const mn_logistic_params *p, const int8_t *input, int8_t *output) {
    for (int32_t i = 0; i < p->size; ++i) {
        const int32_t x = (int32_t)input[i] - p->input_zero_point;
        if (x <= -p->input_range_radius) {
            output[i] = -128;
        } else if (x >= p->input_range_radius) {
            output[i] = 127;
        } else {
            /* MultiplyByQuantizedMultiplier: x * scale in Q4 */
            const int32_t x_q4 = mn_requantize(x, p->input_multiplier, p->input_left_shift);
            /* Q0 -> units of 1/256 (Q23 in TFLM's naming), then the -128 zero point */
            const int32_t y = mn_rounding_divide_by_pot(mn_logistic_q4(x_q4), 31 - 8);
            output[i] = (int8_t)mn_clamp(y - 128, -128, 127);
        }
    }
}

/* gemmlowp one_minus_x_over_one_plus_x_for_x_in_0_1: a in [0, 1), Q0 -> (1 - a) / (1 + a), Q0.
 * The same Newton-Raphson reciprocal as mn_one_over_one_plus_x, then x - 1 rescaled from Q2. */
static int32_t mn_one_minus_x_over_one_plus_x(int32_t a) {
    const int32_t half_denominator = (int32_t)(((int64_t)a + MN_Q0_ONE + 1) / 2);
    const int32_t q2_one = 1 << 29;
    const int32_t c48_over_17 = 1515870810, c_minus_32_over_17 = -1010580540; /* Q2 */
    int32_t x = c48_over_17 + mn_sat_round_doubling_high_mul(half_denominator, c_minus_32_over_17);
    for (int i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = mn_sat_round_doubling_high_mul(half_denominator, x);
        const int32_t one_minus = q2_one - half_denominator_times_x;
        x = x + mn_sat_shl(mn_sat_round_doubling_high_mul(x, one_minus), 2);
    }
    return mn_sat_shl(x - q2_one, 2); /* Rescale<0> of a Q2 value */
}

/* gemmlowp tanh: a in Q4 -> tanh(a), Q0. For n = -|a|, (1 - exp(2n)) / (1 + exp(2n)) is
 * tanh(|a|); exp(2n) reads n's raw value as Q5 (ExactMulByPot<1>). */
static int32_t mn_tanh_q4(int32_t a) {
    if (a == 0) return 0;
    const int32_t n = a < 0 ? a : -a;
    const int32_t t = mn_one_minus_x_over_one_plus_x(mn_exp_on_negative_values(n, 5));
    return a < 0 ? -t : t;
}

void mn_tanh_s8(const mn_tanh_params *p, const int8_t *input, int8_t *output) {
    for (int32_t i = 0; i < p->size; ++i) {
        const int32_t x = (int32_t)input[i] - p->input_zero_point;
        if (x <= -p->input_range_radius) {
            output[i] = -128;
        } else if (x >= p->input_range_radius) {
            output[i] = 127;
        } else {
            const int32_t x_q4 = mn_requantize(x, p->input_multiplier, p->input_left_shift);
            /* Q0 -> units of 1/128 (kOutputScale 7), zero point 0 */
            const int32_t y = mn_rounding_divide_by_pot(mn_tanh_q4(x_q4), 31 - 7);
            output[i] = (int8_t)mn_clamp(y, -128, 127);
        }
    }
}

/* ---- HARD_SWISH: TFLM's 16-bit fixed-point reference (reference_ops::HardSwish<int8_t>) ---- */

/* gemmlowp SaturatingRoundingDoublingHighMul on int16 */
static int16_t mn_srdhm16(int16_t a, int16_t b) {
    if (a == INT16_MIN && b == INT16_MIN) return INT16_MAX;
    const int32_t ab = (int32_t)a * (int32_t)b;
    const int32_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
    return (int16_t)((ab + nudge) / (1 << 15)); /* C division truncates toward zero, as C++ */
}

/* TFLite's SaturatingDoublingHighMul (no rounding: truncation toward zero) */
static int16_t mn_sdhm16(int16_t a, int16_t b) {
    if (a == INT16_MIN && b == INT16_MIN) return INT16_MAX;
    return (int16_t)(((int32_t)a * (int32_t)b) / (1 << 15));
}

/* TFLite's hard-swish SaturatingLeftShift: value * 2^amount saturated to int16 */
static int16_t mn_sat_shl16(int16_t value, int amount) {
    const int64_t r = (int64_t)value * ((int64_t)1 << amount);
    return (int16_t)(r > INT16_MAX ? INT16_MAX : (r < INT16_MIN ? INT16_MIN : r));
}

/* gemmlowp RoundingDivideByPOT on int16 */
static int16_t mn_rdbpot16(int16_t x, int exponent) {
    const int16_t mask = (int16_t)((1 << exponent) - 1);
    const int16_t remainder = (int16_t)(x & mask);
    const int16_t threshold = (int16_t)((mask >> 1) + (x < 0 ? 1 : 0));
    return (int16_t)((x >> exponent) + (remainder > threshold ? 1 : 0));
}

void mn_hard_swish_s8(const mn_hard_swish_params *p, const int8_t *input, int8_t *output) {
    const int16_t out_mult = (int16_t)p->output_multiplier, relu_mult = (int16_t)p->reluish_multiplier;
    const int relu_exp = (int)p->reluish_exponent;
    for (int32_t i = 0; i < p->size; ++i) {
        const int16_t x = (int16_t)((int32_t)input[i] - p->input_zero_point);
        const int16_t x_hires = (int16_t)(x * (1 << 7)); /* |x| <= 255: fits int16 */
        const int16_t x_out_scale = mn_srdhm16(x_hires, out_mult);
        int16_t reluish = x_hires;
        if (relu_exp > 0) reluish = mn_sat_shl16(reluish, relu_exp - 1);
        reluish = mn_srdhm16(reluish, relu_mult);
        if (relu_exp > 0) reluish = mn_sat_shl16(reluish, 1);
        if (relu_exp < 0) reluish = mn_rdbpot16(reluish, -relu_exp);
        /* [-1, 1] (Q15) -> [0, 1]: relu6(x + 3) / 6 */
        reluish = (int16_t)(((int32_t)reluish + (1 << 15)) >> 1);
        const int16_t pre = mn_sdhm16(reluish, x_out_scale);
        int32_t y = (int32_t)mn_rdbpot16(pre, -(int)p->output_exponent) + p->output_zero_point;
        output[i] = (int8_t)mn_clamp(y, -128, 127);
    }
}
