/* The fused CONV_2D -> MUL(attention) -> ADD chain of a split-form DY-Conv (and KernelDNA's
 * CONV_2D -> MUL), bit-exact with TFLM running the unfused ops.
 *
 * Every output element of the chain depends only on the same element of each expert's
 * convolution, so the experts run one after the other over the whole output, through
 * mn_conv.c's own loops (SIMD path included) with an epilogue (mn_internal.h) instead of a
 * store: expert 0's conv output is MUL'd by its attention value and stored; each later expert's
 * is MUL'd and ADDed into what the output element holds, with the ADD's exact two-input
 * rescaling and requantisation. The output tensor is the only storage: no intermediate tensor.
 * With one attention value per expert (DY-Conv), the MUL and the ADD's rescaling of its output
 * depend on the conv output alone, and the running sum's rescaling on its int8 value: they are
 * tabulated per expert for the 256 int8 values (filled with the same formulas; with the first
 * expert's MUL output, 2.25 KB of stack, the kernel's only scratch), so each element costs two
 * table loads, the ADD's requantisation and the clamp. */
#include "mn_internal.h"

void mn_conv_mul_add_s8(const mn_conv_mul_add_params *p, const int8_t *input, const int8_t *filters,
                        const int32_t *biases, const int8_t *attention, int8_t *output) {
    const int32_t oc = p->out_ch;
    mn_conv_params c;
    c.in_len = p->in_len;
    c.in_ch = p->in_ch;
    c.out_len = p->out_len;
    c.out_ch = oc;
    c.kernel = p->kernel;
    c.stride = p->stride;
    c.dilation = p->dilation;
    c.pad_before = p->pad_before;
    c.groups = p->groups;
    c.input_offset = p->input_offset;
    int32_t prev_table[256], new_table[256]; /* the only scratch: 2.25 KB of stack */
    int8_t mul_table[256];
    for (int32_t e = 0; e < p->experts; ++e) {
        const int32_t *q = p->quant + (size_t)e * MN_FUSED_QUANT;
        c.output_offset = q[1];
        c.act_min = q[2];
        c.act_max = q[3];
        c.out_multiplier = p->out_multiplier + (size_t)e * oc;
        c.out_shift = p->out_shift + (size_t)e * oc;
        mn_conv_epilogue ep;
        ep.att = attention + q[0];
        ep.att_stride = p->att_stride;
        ep.mul_conv_offset = q[4];
        ep.mul_att_offset = q[5];
        ep.mul_rq = mn_rq_make(q[7], q[8], q[6]);
        ep.mul_min = q[9];
        ep.mul_max = q[10];
        ep.add = e > 0;
        ep.new_scaled = NULL;
        ep.prev_scaled = NULL;
        ep.add_prev_offset = q[11];
        ep.add_new_offset = q[12];
        ep.left_shift = q[14];
        ep.prev_mult = q[15];
        ep.prev_exp = -q[16];
        ep.new_mult = q[17];
        ep.new_exp = -q[18];
        ep.add_out_rq = mn_rq_make(q[19], q[20], q[13]);
        ep.add_min = q[21];
        ep.add_max = q[22];
        if (ep.add && (int64_t)p->out_len * oc > 256) {
            /* the running sum's rescaling is a function of its int8 value; with one attention
             * value, the MUL and the rescaling of its output are a function of c alone */
            for (int32_t v = -128; v < 128; ++v) prev_table[v + 128] = mn_epilogue_prev(&ep, v);
            ep.prev_scaled = prev_table;
            if (p->att_stride == 0) {
                for (int32_t v = -128; v < 128; ++v) new_table[v + 128] = mn_epilogue_new(&ep, mn_epilogue_mul(&ep, 0, v));
                ep.new_scaled = new_table;
            }
        }
        ep.tabulated = ep.prev_scaled && ep.new_scaled && ep.add_out_rq.sh >= 0;
        ep.mul_table = NULL;
        if (!ep.add && p->experts > 1 && p->att_stride == 0 && (int64_t)p->out_len * oc > 256) {
            for (int32_t v = -128; v < 128; ++v) mul_table[v + 128] = (int8_t)mn_epilogue_mul(&ep, 0, v);
            ep.mul_table = mul_table;
        }
        mn_conv_s8_epilogue(&c, input, filters + (size_t)e * p->filter_stride, biases ? biases + (size_t)e * oc : NULL,
                            output, &ep);
    }
}
