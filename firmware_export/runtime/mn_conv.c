/* CONV_2D (1-D, grouped) and DEPTHWISE_CONV_2D (1-D), int8 per-channel.
 *
 * Portable path: the reference loops, one output channel at a time (its requantisation
 * constants computed once, mn_rq). SIMD path (Armv7E-M DSP, MICRONAS_SIMD) for the common dense
 * case (groups 1, dilation 1, any stride): two output channels x two output steps per block
 * (conv_block_2x2), so every input word is loaded and unpacked once for two channels; the two
 * filter rows are unpacked to halfword pairs once per channel pair into a stack buffer and read
 * back with LDRD; the input offset is folded into the accumulators' start value (input_offset *
 * sum of the filter row); steps whose window crosses the padding use the valid part of the window
 * only (mn_dot_1x2_off). Depthwise (depth multiplier 1): four channels per pass with the halfword
 * multiplies (SMLABB/SMLATT).
 *
 * No scratch memory. Stack: the SIMD dense path's deepest frame chain is about 850 bytes on
 * Cortex-M4 (GCC 12 -O2 -fstack-usage: mn_conv_s8 128 + conv_pair_interior 656, of which the
 * 512-byte unpacked-weight buffer, + conv_block_2x2 64); the portable path 120 bytes (the
 * kernels before this change: 128). */
#include "mn_internal.h"

/* first and one past the last tap k (0 <= k < kernel) with 0 <= start + k*dilation < in_len */
static inline void mn_valid_taps(int32_t start, int32_t kernel, int32_t dilation, int32_t in_len, int32_t *klo,
                                 int32_t *khi) {
    int32_t lo = start < 0 ? (-start + dilation - 1) / dilation : 0;
    int32_t hi = start < in_len ? (in_len - 1 - start) / dilation + 1 : 0;
    if (hi > kernel) hi = kernel;
    if (lo > hi) lo = hi;
    *klo = lo;
    *khi = hi;
}

/* output channel o of any geometry (groups, dilation, stride) */
static void conv_channel(const mn_conv_params *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                         int8_t *output, int32_t o, const mn_conv_epilogue *epi) {
    const int32_t in_per_group = p->in_ch / p->groups;
    const int32_t out_per_group = p->out_ch / p->groups;
    const int32_t taps = p->kernel * in_per_group; /* filter elements per output channel */
    const int8_t *w = filter + (size_t)o * taps;
    const int32_t b = bias ? bias[o] : 0;
    const mn_rq rq = mn_rq_make_acc(p->out_multiplier[o], p->out_shift[o], p->output_offset, b, taps);
    const int8_t *in = input + (size_t)(o / out_per_group) * in_per_group;
    for (int32_t t = 0; t < p->out_len; ++t) {
        const int32_t start = t * p->stride - p->pad_before;
        int32_t klo, khi;
        mn_valid_taps(start, p->kernel, p->dilation, p->in_len, &klo, &khi);
        int32_t acc = b;
        if (p->groups == 1 && p->dilation == 1) {
            /* the valid taps are one contiguous run of inputs matching the filter layout */
            acc += mn_dot_s8(in + (size_t)(start + klo) * p->in_ch, w + (size_t)klo * in_per_group,
                             (khi - klo) * in_per_group, p->input_offset);
        } else {
            for (int32_t k = klo; k < khi; ++k) {
                acc += mn_dot_s8(in + (size_t)(start + k * p->dilation) * p->in_ch, w + (size_t)k * in_per_group,
                                 in_per_group, p->input_offset);
            }
        }
        mn_conv_store(epi, output + (size_t)t * p->out_ch + o, o, mn_rq_out(&rq, acc, p->act_min, p->act_max));
    }
}

#if MICRONAS_SIMD
/* sum of n int8 */
static int32_t mn_sum_s8(const int8_t *w, int32_t n) {
    int32_t s = 0, i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint32_t v = mn_ld32(w + i);
        s = __smlad(__sxtb16(v), 0x00010001, __smlad(mn_sxtb16_ror8(v), 0x00010001, s));
    }
    for (; i < n; ++i) s += w[i];
    return s;
}

/* One 4-byte step of a 2x2 block: inputs xp[i] (step t) and xp[xstep + i] (step t+1), weights
 * wp[i] (channel o) and wp[n + i] (channel o+1); 4 loads, 8 unpacks, 8 SMLAD for 16 MACs. */
#define MN_STEP_2X2()                                                    \
    do {                                                                 \
        uint32_t xa, xb, wv;                                             \
        MN_LDR_OFF(xb, xp, xstep);                                       \
        MN_LDR_POST(xa, xp);                                             \
        const int16x2_t xa02 = __sxtb16(xa), xa13 = mn_sxtb16_ror8(xa); \
        const int16x2_t xb02 = __sxtb16(xb), xb13 = mn_sxtb16_ror8(xb); \
        MN_LDR_OFF(wv, wp, n);                                           \
        int16x2_t w02 = __sxtb16(wv), w13 = mn_sxtb16_ror8(wv);         \
        a01 = __smlad(xa02, w02, a01);                                   \
        a01 = __smlad(xa13, w13, a01);                                   \
        a11 = __smlad(xb02, w02, a11);                                   \
        a11 = __smlad(xb13, w13, a11);                                   \
        MN_LDR_POST(wv, wp);                                             \
        w02 = __sxtb16(wv);                                              \
        w13 = mn_sxtb16_ror8(wv);                                        \
        a00 = __smlad(xa02, w02, a00);                                   \
        a00 = __smlad(xa13, w13, a00);                                   \
        a10 = __smlad(xb02, w02, a10);                                   \
        a10 = __smlad(xb13, w13, a10);                                   \
    } while (0)

/* A channel pair's filter rows, sign-extended to halfword pairs once per pair and kept on the
 * stack: per 4-byte step, [row o bytes 0,2 | row o bytes 1,3 | row o+1 bytes 0,2 | row o+1
 * bytes 1,3], read back with two LDRD. Every output step pair then unpacks only its inputs.
 * MN_WBUF_STEPS 4-byte steps of both rows: 32 -> 512 bytes of stack (the kernel's only array);
 * windows longer than 128 bytes unpack the rest of the rows on the fly. */
#define MN_WBUF_STEPS 32

/* word pair load with post-increment (LDRD: the buffer is word aligned) */
#define MN_LDRD_POST(a, b, ptr)                                                      \
    __asm__ volatile("ldrd %0, %1, [%2], #8" : "=r"(a), "=r"(b), "+r"(ptr)          \
                     : "m"(*(const uint32_t(*)[2])(ptr)))

/* One 4-byte step of a 2x2 block from the unpacked rows at pb. */
#define MN_STEP_2X2_BUF()                                                \
    do {                                                                 \
        uint32_t xa, xb, w02, w13;                                       \
        MN_LDR_OFF(xb, xp, xstep);                                       \
        MN_LDR_POST(xa, xp);                                             \
        const int16x2_t xa02 = __sxtb16(xa), xa13 = mn_sxtb16_ror8(xa); \
        const int16x2_t xb02 = __sxtb16(xb), xb13 = mn_sxtb16_ror8(xb); \
        MN_LDRD_POST(w02, w13, pb);                                      \
        a00 = __smlad(xa02, w02, a00);                                   \
        a00 = __smlad(xa13, w13, a00);                                   \
        a10 = __smlad(xb02, w02, a10);                                   \
        a10 = __smlad(xb13, w13, a10);                                   \
        MN_LDRD_POST(w02, w13, pb);                                      \
        a01 = __smlad(xa02, w02, a01);                                   \
        a01 = __smlad(xa13, w13, a01);                                   \
        a11 = __smlad(xb02, w02, a11);                                   \
        a11 = __smlad(xb13, w13, a11);                                   \
    } while (0)

/* What a 2x2 block needs, read through one pointer (LDRD pairs) so that the block's own code
 * has the registers to itself: the per-channel-pair constants of the interior loop. */
typedef struct {
    const uint32_t *wbuf, *wbuf4, *wbuf_end; /* the unpacked rows (nb steps); end of the first nb & ~3 */
    const int8_t *w;                 /* filter row of channel o; w + 4*nb: the rest, unpacked on the fly */
    int32_t n, xstep;                /* window length; input step between output steps */
    int32_t base0, base1;            /* bias + input_offset * filter row sum */
    int32_t m0, r0;                  /* fast requantisation of channel o (mn_rq) */
    int32_t m1, r1;                  /* ... of channel o+1 */
    int32_t s0, s1;
    int32_t lo0, lo1, hm0, hm1, p0, p1, z0, z1; /* the other one-step forms' constants (mn_rq_gen) */
    uint32_t lo4, hi4; /* activation clamp in every byte */
    int32_t cout;
    int32_t nb; /* 4-byte steps in wbuf */
    const mn_conv_epilogue *epi; /* NULL: store the outputs (a plain conv) */
    int32_t o;                   /* the pair's first channel (for the epilogue) */
} mn_blk2x2;

/* A 2x2 block's four conv outputs v (bytes: [t o, t o+1, t+1 o, t+1 o+1]) through the epilogue.
 * Out of line: the block's own code keeps its registers; the tabulated form (DY-Conv's ADD) is
 * straight-line. */
__attribute__((noinline)) static void conv_block_epilogue(const mn_conv_epilogue *e, int8_t *y, int32_t cout,
                                                          int32_t o, uint32_t v) {
    if (e->tabulated) {
        y[0] = mn_epilogue_tab(e, (int8_t)v, y[0]);
        y[1] = mn_epilogue_tab(e, (int8_t)(v >> 8), y[1]);
        y[cout] = mn_epilogue_tab(e, (int8_t)(v >> 16), y[cout]);
        y[cout + 1] = mn_epilogue_tab(e, (int8_t)(v >> 24), y[cout + 1]);
        return;
    }
    if (e->mul_table) { /* the first of several experts: its MUL's output, tabulated */
        y[0] = e->mul_table[(int8_t)v + 128];
        y[1] = e->mul_table[(int8_t)(v >> 8) + 128];
        y[cout] = e->mul_table[(int8_t)(v >> 16) + 128];
        y[cout + 1] = e->mul_table[(int8_t)(v >> 24) + 128];
        return;
    }
    if (!e->add && e->mul_rq.sh >= 0) { /* a MUL alone (KernelDNA): the two channels' factors once */
        const int32_t a0 = (int32_t)e->att[o * e->att_stride] + e->mul_att_offset;
        const int32_t a1 = (int32_t)e->att[(o + 1) * e->att_stride] + e->mul_att_offset;
        y[0] = mn_epilogue_mul_fast(e, (int8_t)v, a0);
        y[1] = mn_epilogue_mul_fast(e, (int8_t)(v >> 8), a1);
        y[cout] = mn_epilogue_mul_fast(e, (int8_t)(v >> 16), a0);
        y[cout + 1] = mn_epilogue_mul_fast(e, (int8_t)(v >> 24), a1);
        return;
    }
    mn_conv_store(e, y, o, (int8_t)v);
    mn_conv_store(e, y + 1, o + 1, (int8_t)(v >> 8));
    mn_conv_store(e, y + cout, o, (int8_t)(v >> 16));
    mn_conv_store(e, y + cout + 1, o + 1, (int8_t)(v >> 24));
}

/* Output steps t, t+1 (windows at x, x + xstep) of channels o, o+1 into y[0..1], y[cout..cout+1];
 * gen: the channels' requantisation in any one-step form (mn_rq_gen), else the e >= 2 form. */
__attribute__((always_inline)) static inline void conv_block_2x2_body(const mn_blk2x2 *k, const int8_t *x, int8_t *y,
                                                                      const int gen) {
    const int8_t *xp = x;
    const uint32_t *pb = k->wbuf;
    const int32_t xstep = k->xstep;
    int32_t a00 = k->base0, a01 = k->base1, a10 = k->base0, a11 = k->base1;
    {
        const uint32_t *const pb4 = k->wbuf4;
        while (pb != pb4) {
            MN_STEP_2X2_BUF();
            MN_STEP_2X2_BUF();
            MN_STEP_2X2_BUF();
            MN_STEP_2X2_BUF();
        }
        while (pb != k->wbuf_end) MN_STEP_2X2_BUF();
    }
    const int32_t n = k->n;
    int32_t rest = n - 4 * k->nb;
    if (rest > 0) { /* windows longer than the buffer */
        const int8_t *wp = k->w + 4 * k->nb;
        for (; rest >= 16; rest -= 16) {
            MN_STEP_2X2();
            MN_STEP_2X2();
            MN_STEP_2X2();
            MN_STEP_2X2();
        }
        for (; rest >= 4; rest -= 4) MN_STEP_2X2();
        for (; rest > 0; --rest, ++xp, ++wp) {
            const int32_t xa = xp[0], xb = xp[xstep], wa = wp[0], wb = wp[n];
            a00 += xa * wa;
            a01 += xa * wb;
            a10 += xb * wa;
            a11 += xb * wb;
        }
    }
    /* requantise, saturate to int8, pack [t o, t o+1, t+1 o, t+1 o+1], clamp, store */
    uint32_t v;
    if (gen) {
        v = (uint32_t)__ssat(mn_rq_gen(a00, k->m0, k->r0, k->s0, k->lo0, k->hm0, k->p0, k->z0), 8);
        MN_BFI8(v, __ssat(mn_rq_gen(a01, k->m1, k->r1, k->s1, k->lo1, k->hm1, k->p1, k->z1), 8), 8);
        MN_BFI8(v, __ssat(mn_rq_gen(a10, k->m0, k->r0, k->s0, k->lo0, k->hm0, k->p0, k->z0), 8), 16);
        MN_BFI8(v, __ssat(mn_rq_gen(a11, k->m1, k->r1, k->s1, k->lo1, k->hm1, k->p1, k->z1), 8), 24);
    } else {
        v = (uint32_t)__ssat(mn_rq_fast(a00, k->m0, k->r0, k->s0), 8);
        MN_BFI8(v, __ssat(mn_rq_fast(a01, k->m1, k->r1, k->s1), 8), 8);
        MN_BFI8(v, __ssat(mn_rq_fast(a10, k->m0, k->r0, k->s0), 8), 16);
        MN_BFI8(v, __ssat(mn_rq_fast(a11, k->m1, k->r1, k->s1), 8), 24);
    }
    v = mn_clamp_s8x4(v, k->lo4, k->hi4);
    if (k->epi) { /* a fused consumer folds each output into what y holds */
        conv_block_epilogue(k->epi, y, k->cout, k->o, v);
        return;
    }
    const uint16_t v0 = (uint16_t)v, v1 = (uint16_t)(v >> 16);
    memcpy(y, &v0, 2);
    memcpy(y + k->cout, &v1, 2);
}

/* both channels in the e >= 2 form: what the latency tables measure */
__attribute__((noinline)) static void conv_block_2x2(const mn_blk2x2 *k, const int8_t *x, int8_t *y) {
    conv_block_2x2_body(k, x, y, 0);
}

/* a channel with a larger or a tiny scale (mn_rq_gen): three instructions more per output */
__attribute__((noinline)) static void conv_block_2x2_gen(const mn_blk2x2 *k, const int8_t *x, int8_t *y) {
    conv_block_2x2_body(k, x, y, 1);
}

/* Channels o, o+1 (filter rows w, w + n), interior steps t0 .. t1-1 in pairs (t1 - t0 even),
 * both channels in a one-step requantisation form. */
static void conv_pair_interior(const mn_conv_params *p, const int8_t *input, const int8_t *w, int32_t b0,
                               int32_t b1, const mn_rq *q0, const mn_rq *q1, int8_t *out, int32_t t0, int32_t t1,
                               const mn_conv_epilogue *epi, int32_t o) {
    uint32_t wbuf[4 * MN_WBUF_STEPS];
    const int32_t n = p->kernel * p->in_ch;
    mn_blk2x2 k;
    k.nb = n / 4 < MN_WBUF_STEPS ? n / 4 : MN_WBUF_STEPS;
    /* unpack the rows' first nb words, summing them on the way */
    int32_t sum0 = 0, sum1 = 0;
    uint32_t *pb = wbuf;
    const int8_t *w0 = w;
    for (int32_t i = 0; i < k.nb; ++i, w0 += 4, pb += 4) {
        const uint32_t v0 = mn_ld32(w0), v1 = mn_ld32(w0 + n);
        const uint32_t a = __sxtb16(v0), b = mn_sxtb16_ror8(v0), c = __sxtb16(v1), d = mn_sxtb16_ror8(v1);
        pb[0] = a;
        pb[1] = b;
        pb[2] = c;
        pb[3] = d;
        sum0 = __smlad(a, 0x00010001, __smlad(b, 0x00010001, sum0));
        sum1 = __smlad(c, 0x00010001, __smlad(d, 0x00010001, sum1));
    }
    sum0 += mn_sum_s8(w0, n - 4 * k.nb); /* the rest of a longer window */
    sum1 += mn_sum_s8(w0 + n, n - 4 * k.nb);
    k.wbuf = wbuf;
    k.wbuf4 = wbuf + 16 * (k.nb >> 2);
    k.wbuf_end = pb;
    k.w = w;
    k.n = n;
    k.xstep = p->stride * p->in_ch;
    /* interior: sum (x + off) * w = sum x * w + off * sum w */
    k.base0 = b0 + p->input_offset * sum0;
    k.base1 = b1 + p->input_offset * sum1;
    k.m0 = q0->mult;
    k.r0 = q0->rhi;
    k.s0 = q0->sh;
    k.m1 = q1->mult;
    k.r1 = q1->rhi;
    k.s1 = q1->sh;
    k.lo0 = q0->lo;
    k.lo1 = q1->lo;
    k.hm0 = q0->hm;
    k.hm1 = q1->hm;
    k.p0 = q0->pre;
    k.p1 = q1->pre;
    k.z0 = q0->post;
    k.z1 = q1->post;
    k.lo4 = 0x01010101u * (uint8_t)p->act_min;
    k.hi4 = 0x01010101u * (uint8_t)p->act_max;
    k.cout = p->out_ch;
    k.epi = epi;
    k.o = o;
    const int8_t *x = input + (size_t)(t0 * p->stride - p->pad_before) * p->in_ch;
    int8_t *y = out + (size_t)t0 * p->out_ch;
    int8_t *const yend = out + (size_t)t1 * p->out_ch;
    const int32_t xadv = 2 * k.xstep, yadv = 2 * p->out_ch;
    if (q0->pre == 0 && q1->pre == 0 && q0->post == 0 && q1->post == 0) {
        for (; y != yend; x += xadv, y += yadv) conv_block_2x2(&k, x, y);
    } else {
        for (; y != yend; x += xadv, y += yadv) conv_block_2x2_gen(&k, x, y);
    }
}

/* Channels o, o+1, steps t_from .. t_to-1 one at a time, from the valid part of each window:
 * the border steps, an odd interior step, and channel pairs not in the fast form. */
static void conv_pair_edge(const mn_conv_params *p, const int8_t *input, const int8_t *w, int32_t b0, int32_t b1,
                           const mn_rq *q0, const mn_rq *q1, int8_t *out, int32_t t_from, int32_t t_to,
                           const mn_conv_epilogue *epi, int32_t o) {
    const int32_t cin = p->in_ch, n = p->kernel * cin;
    for (int32_t t = t_from; t < t_to; ++t) {
        const int32_t start = t * p->stride - p->pad_before;
        int32_t klo, khi;
        mn_valid_taps(start, p->kernel, 1, p->in_len, &klo, &khi);
        int32_t a0 = b0, a1 = b1;
        mn_dot_1x2_off(input + (size_t)(start + klo) * cin, w + (size_t)klo * cin, n, (khi - klo) * cin,
                       p->input_offset, &a0, &a1);
        mn_conv_store(epi, out + (size_t)t * p->out_ch, o, mn_rq_out(q0, a0, p->act_min, p->act_max));
        mn_conv_store(epi, out + (size_t)t * p->out_ch + 1, o + 1, mn_rq_out(q1, a1, p->act_min, p->act_max));
    }
}

/* groups 1, dilation 1 */
static void conv_dense_simd(const mn_conv_params *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                            int8_t *output, const mn_conv_epilogue *epi) {
    const int32_t stride = p->stride, pad = p->pad_before, n = p->kernel * p->in_ch;
    /* interior steps [t0, t1): the whole window inside the input */
    int32_t t0 = (pad + stride - 1) / stride;
    int32_t t1 = p->in_len - p->kernel + pad >= 0 ? (p->in_len - p->kernel + pad) / stride + 1 : 0;
    if (t1 > p->out_len) t1 = p->out_len;
    if (t0 > t1) t0 = t1;
    const int32_t t2 = t0 + ((t1 - t0) & ~1); /* end of the step pairs */
    int32_t o = 0;
    for (; o + 2 <= p->out_ch; o += 2) {
        const int8_t *w = filter + (size_t)o * n;
        const int32_t b0 = bias ? bias[o] : 0, b1 = bias ? bias[o + 1] : 0;
        const mn_rq q0 = mn_rq_make_acc(p->out_multiplier[o], p->out_shift[o], p->output_offset, b0, n);
        const mn_rq q1 =
            mn_rq_make_acc(p->out_multiplier[o + 1], p->out_shift[o + 1], p->output_offset, b1, n);
        if (q0.sh < 0 || q1.sh < 0) { /* a scale outside the one-step forms: all steps one at a time */
            conv_pair_edge(p, input, w, b0, b1, &q0, &q1, output + o, 0, p->out_len, epi, o);
            continue;
        }
        conv_pair_edge(p, input, w, b0, b1, &q0, &q1, output + o, 0, t0, epi, o);
        if (t2 > t0) conv_pair_interior(p, input, w, b0, b1, &q0, &q1, output + o, t0, t2, epi, o);
        conv_pair_edge(p, input, w, b0, b1, &q0, &q1, output + o, t2, p->out_len, epi, o);
    }
    if (o < p->out_ch) conv_channel(p, input, filter, bias, output, o, epi); /* an odd last channel */
}
#endif /* MICRONAS_SIMD */

void mn_conv_s8_epilogue(const mn_conv_params *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                         int8_t *output, const mn_conv_epilogue *epi) {
#if MICRONAS_SIMD
    if (p->groups == 1 && p->dilation == 1) {
        conv_dense_simd(p, input, filter, bias, output, epi);
        return;
    }
#endif
    for (int32_t o = 0; o < p->out_ch; ++o) conv_channel(p, input, filter, bias, output, o, epi);
}

void mn_conv_s8(const mn_conv_params *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                int8_t *output) {
    mn_conv_s8_epilogue(p, input, filter, bias, output, NULL);
}

#if MICRONAS_SIMD
/* depth multiplier 1, four channels per pass: one word of inputs and one of weights per tap,
 * unpacked to halfword pairs (channels c, c+2 and c+1, c+3), one SMLABB/SMLATT per MAC. */
static void dwconv_dm1_simd(const mn_dwconv_params *p, const int8_t *input, const int8_t *filter,
                            const int32_t *bias, int8_t *output) {
    const int32_t ch = p->in_ch, dil = p->dilation;
    const uint32_t off2 = mn_pair16(p->input_offset);
    const uint32_t lo4 = 0x01010101u * (uint8_t)p->act_min, hi4 = 0x01010101u * (uint8_t)p->act_max;
    const int32_t xstride = dil * ch;
    for (int32_t c = 0; c + 4 <= ch; c += 4) {
        mn_rq q[4];
        int32_t b[4];
        int onestep = 1, classic = 1; /* every channel in a one-step form; in the e >= 2 form */
        for (int i = 0; i < 4; ++i) {
            b[i] = bias ? bias[c + i] : 0;
            q[i] = mn_rq_make_acc(p->out_multiplier[c + i], p->out_shift[c + i], p->output_offset,
                                  b[i], p->kernel);
            onestep &= q[i].sh >= 0;
            classic &= q[i].sh >= 0 && q[i].pre == 0 && q[i].post == 0;
        }
        for (int32_t t = 0; t < p->out_len; ++t) {
            const int32_t start = t * p->stride - p->pad_before;
            int32_t klo, khi;
            mn_valid_taps(start, p->kernel, dil, p->in_len, &klo, &khi);
            int32_t a0 = b[0], a1 = b[1], a2 = b[2], a3 = b[3];
            const int8_t *x = input + (size_t)(start + klo * dil) * ch + c;
            const int8_t *w = filter + (size_t)klo * ch + c;
            for (int32_t k = klo; k < khi; ++k, x += xstride, w += ch) {
                const uint32_t xv = mn_ld32(x), wv = mn_ld32(w);
                const int16x2_t x02 = __sxtab16(off2, xv), x13 = mn_sxtab16_ror8(off2, xv);
                const int16x2_t w02 = __sxtb16(wv), w13 = mn_sxtb16_ror8(wv);
                a0 = __smlabb(x02, w02, a0);
                a2 = __smlatt(x02, w02, a2);
                a1 = __smlabb(x13, w13, a1);
                a3 = __smlatt(x13, w13, a3);
            }
            int8_t *y = output + (size_t)t * ch + c;
            if (classic) {
                uint32_t v = (uint32_t)__ssat(mn_rq_fast(a0, q[0].mult, q[0].rhi, q[0].sh), 8);
                MN_BFI8(v, __ssat(mn_rq_fast(a1, q[1].mult, q[1].rhi, q[1].sh), 8), 8);
                MN_BFI8(v, __ssat(mn_rq_fast(a2, q[2].mult, q[2].rhi, q[2].sh), 8), 16);
                MN_BFI8(v, __ssat(mn_rq_fast(a3, q[3].mult, q[3].rhi, q[3].sh), 8), 24);
                v = mn_clamp_s8x4(v, lo4, hi4);
                memcpy(y, &v, 4);
            } else if (onestep) { /* a channel with a larger or a tiny scale (mn_rq_gen) */
                uint32_t v = (uint32_t)__ssat(mn_rq_one(&q[0], a0), 8);
                MN_BFI8(v, __ssat(mn_rq_one(&q[1], a1), 8), 8);
                MN_BFI8(v, __ssat(mn_rq_one(&q[2], a2), 8), 16);
                MN_BFI8(v, __ssat(mn_rq_one(&q[3], a3), 8), 24);
                v = mn_clamp_s8x4(v, lo4, hi4);
                memcpy(y, &v, 4);
            } else {
                y[0] = mn_rq_out(&q[0], a0, p->act_min, p->act_max);
                y[1] = mn_rq_out(&q[1], a1, p->act_min, p->act_max);
                y[2] = mn_rq_out(&q[2], a2, p->act_min, p->act_max);
                y[3] = mn_rq_out(&q[3], a3, p->act_min, p->act_max);
            }
        }
    }
}
#endif

void mn_dwconv_s8(const mn_dwconv_params *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                  int8_t *output) {
    const int32_t out_ch = p->in_ch * p->depth_multiplier;
    int32_t c0 = 0; /* channels already done by the SIMD path */
#if MICRONAS_SIMD
    if (p->depth_multiplier == 1) {
        dwconv_dm1_simd(p, input, filter, bias, output);
        c0 = p->in_ch & ~3;
    }
#endif
    for (int32_t c = c0; c < p->in_ch; ++c) {
        for (int32_t m = 0; m < p->depth_multiplier; ++m) {
            const int32_t o = c * p->depth_multiplier + m;
            const int32_t b = bias ? bias[o] : 0;
            const mn_rq rq = mn_rq_make_acc(p->out_multiplier[o], p->out_shift[o], p->output_offset,
                                            b, p->kernel);
            for (int32_t t = 0; t < p->out_len; ++t) {
                const int32_t start = t * p->stride - p->pad_before;
                int32_t klo, khi;
                mn_valid_taps(start, p->kernel, p->dilation, p->in_len, &klo, &khi);
                int32_t acc = b;
                for (int32_t k = klo; k < khi; ++k) {
                    acc += ((int32_t)input[(size_t)(start + k * p->dilation) * p->in_ch + c] + p->input_offset) *
                           (int32_t)filter[(size_t)k * out_ch + o];
                }
                output[(size_t)t * out_ch + o] = mn_rq_out(&rq, acc, p->act_min, p->act_max);
            }
        }
    }
}
