/*
 * BENCH_OP: time one runtime kernel on synthetic data (docs/protocol.md, "BENCH_OP kernels").
 *
 * params are the kernel's parameter-struct fields as little-endian i32, in declaration order,
 * pointer fields omitted. The firmware places the kernel's tensors in scratch memory, first
 * fit over two regions: the model arena (its content is re-filled before every INVOKE, so this
 * costs the model nothing) and a static buffer of MN_BENCH_SCRATCH_BYTES. Input and weights hold
 * a fixed pseudo-random byte sequence, biases are 0, every output multiplier is 1 << 30 (0.5 in
 * Q31) with shift -8: valid requantisation, so the kernel follows its normal path.
 */
#include <string.h>

#include "micronas_model.h"
#include "micronas_runtime.h"
#include "protocol.h"

#ifndef MN_BENCH_SCRATCH_BYTES
#define MN_BENCH_SCRATCH_BYTES 16384u
#endif

enum { K_CONV = 1, K_DWCONV = 2, K_FC = 3 };

#define MAX_DIM 16384 /* every size field: 1..MAX_DIM, so no index product overflows int32 */
#define MAX_OFFSET 256 /* zero-point offsets: |offset| <= MAX_OFFSET */

__attribute__((aligned(16))) static int8_t scratch[MN_BENCH_SCRATCH_BYTES];

/* ---- scratch allocation ------------------------------------------------------------------ */

typedef struct {
    uint8_t *base;
    uint32_t size, used;
} region;

static region regions[2];

static void scratch_reset(void) {
    regions[0].base = (uint8_t *)micronas_arena();
    regions[0].size = MICRONAS_ARENA_BYTES;
    regions[1].base = (uint8_t *)scratch;
    regions[1].size = MN_BENCH_SCRATCH_BYTES;
    regions[0].used = regions[1].used = 0;
}

/* `bytes` (<= 2^26, checked by the caller) from the first region with room, 4-byte aligned. */
static void *take(uint64_t bytes) {
    uint32_t n = (uint32_t)((bytes + 3u) & ~(uint64_t)3u);
    for (int i = 0; i < 2; ++i) {
        region *r = &regions[i];
        if (r->size - r->used >= n) {
            void *p = r->base + r->used;
            r->used += n;
            return p;
        }
    }
    return 0;
}

static void fill_bytes(int8_t *p, uint32_t n) {
    uint32_t x = 12345u;
    for (uint32_t i = 0; i < n; ++i) {
        x = x * 1103515245u + 12345u;
        p[i] = (int8_t)(x >> 24);
    }
}

/* bias [n] = 0, multiplier [n] = 1 << 30, shift [n] = -8 */
static int quant_arrays(uint32_t n, int32_t **bias, int32_t **mult, int32_t **shift) {
    *bias = take(4ull * n);
    *mult = take(4ull * n);
    *shift = take(4ull * n);
    if (!*bias || !*mult || !*shift) return 0;
    for (uint32_t i = 0; i < n; ++i) {
        (*bias)[i] = 0;
        (*mult)[i] = 1 << 30;
        (*shift)[i] = -8;
    }
    return 1;
}

static int8_t *tensor(uint64_t n, int fill) {
    if (n > (1u << 26)) return 0;
    int8_t *p = take(n);
    if (p && fill) fill_bytes(p, (uint32_t)n);
    return p;
}

static int32_t field(const uint8_t *params, int i) { return (int32_t)mn_rd32(params + 4 * i); }
static int dim_ok(int32_t v) { return v >= 1 && v <= MAX_DIM; }
static int offset_ok(int32_t v) { return v >= -MAX_OFFSET && v <= MAX_OFFSET; }
static int act_ok(int32_t lo, int32_t hi) { return -128 <= lo && lo <= hi && hi <= 127; }

#define FAIL(code, text)          \
    do {                          \
        mn_error_detail = (text); \
        return (code);            \
    } while (0)
#define NO_ROOM "tensors do not fit the arena + scratch buffer"

/* ---- kernels ------------------------------------------------------------------------------- */

typedef struct {
    mn_conv_params p;
    const int8_t *in, *w;
    const int32_t *bias;
    int8_t *out;
} conv_job;

static void run_conv(const void *a) {
    const conv_job *j = a;
    mn_conv_s8(&j->p, j->in, j->w, j->bias, j->out);
}

static int bench_conv(const uint8_t *f, uint16_t nbytes, uint16_t count, mn_stats *st) {
    if (nbytes != 13 * 4) FAIL(MN_E_BAD_LENGTH, "conv params: 13 x i32");
    conv_job j;
    mn_conv_params *p = &j.p;
    p->in_len = field(f, 0);
    p->in_ch = field(f, 1);
    p->out_len = field(f, 2);
    p->out_ch = field(f, 3);
    p->kernel = field(f, 4);
    p->stride = field(f, 5);
    p->dilation = field(f, 6);
    p->pad_before = field(f, 7);
    p->groups = field(f, 8);
    p->input_offset = field(f, 9);
    p->output_offset = field(f, 10);
    p->act_min = field(f, 11);
    p->act_max = field(f, 12);
    if (!dim_ok(p->in_len) || !dim_ok(p->in_ch) || !dim_ok(p->out_len) || !dim_ok(p->out_ch) || !dim_ok(p->kernel) ||
        !dim_ok(p->stride) || !dim_ok(p->dilation) || !dim_ok(p->groups) || p->pad_before < 0 ||
        p->pad_before > MAX_DIM)
        FAIL(MN_E_OUT_OF_RANGE, "conv sizes must be 1..16384 (pad_before 0..16384)");
    if (p->in_ch % p->groups || p->out_ch % p->groups) FAIL(MN_E_OUT_OF_RANGE, "groups must divide in_ch and out_ch");
    if (!offset_ok(p->input_offset) || !offset_ok(p->output_offset) || !act_ok(p->act_min, p->act_max))
        FAIL(MN_E_OUT_OF_RANGE, "offsets or activation range out of int8 range");
    scratch_reset();
    int32_t *bias, *mult, *shift;
    j.in = tensor((uint64_t)p->in_len * (uint64_t)p->in_ch, 1);
    j.w = tensor((uint64_t)p->out_ch * (uint64_t)p->kernel * (uint64_t)(p->in_ch / p->groups), 1);
    j.out = tensor((uint64_t)p->out_len * (uint64_t)p->out_ch, 0);
    if (!j.in || !j.w || !j.out || !quant_arrays((uint32_t)p->out_ch, &bias, &mult, &shift)) FAIL(MN_E_OUT_OF_RANGE, NO_ROOM);
    j.bias = bias;
    p->out_multiplier = mult;
    p->out_shift = shift;
    return mn_time_calls(run_conv, &j, count, st);
}

typedef struct {
    mn_dwconv_params p;
    const int8_t *in, *w;
    const int32_t *bias;
    int8_t *out;
} dwconv_job;

static void run_dwconv(const void *a) {
    const dwconv_job *j = a;
    mn_dwconv_s8(&j->p, j->in, j->w, j->bias, j->out);
}

static int bench_dwconv(const uint8_t *f, uint16_t nbytes, uint16_t count, mn_stats *st) {
    if (nbytes != 12 * 4) FAIL(MN_E_BAD_LENGTH, "dwconv params: 12 x i32");
    dwconv_job j;
    mn_dwconv_params *p = &j.p;
    p->in_len = field(f, 0);
    p->in_ch = field(f, 1);
    p->out_len = field(f, 2);
    p->depth_multiplier = field(f, 3);
    p->kernel = field(f, 4);
    p->stride = field(f, 5);
    p->dilation = field(f, 6);
    p->pad_before = field(f, 7);
    p->input_offset = field(f, 8);
    p->output_offset = field(f, 9);
    p->act_min = field(f, 10);
    p->act_max = field(f, 11);
    if (!dim_ok(p->in_len) || !dim_ok(p->in_ch) || !dim_ok(p->out_len) || !dim_ok(p->depth_multiplier) ||
        !dim_ok(p->kernel) || !dim_ok(p->stride) || !dim_ok(p->dilation) || p->pad_before < 0 ||
        p->pad_before > MAX_DIM || (int64_t)p->in_ch * p->depth_multiplier > MAX_DIM)
        FAIL(MN_E_OUT_OF_RANGE, "dwconv sizes must be 1..16384 (pad_before 0..16384)");
    if (!offset_ok(p->input_offset) || !offset_ok(p->output_offset) || !act_ok(p->act_min, p->act_max))
        FAIL(MN_E_OUT_OF_RANGE, "offsets or activation range out of int8 range");
    const uint32_t out_ch = (uint32_t)(p->in_ch * p->depth_multiplier);
    scratch_reset();
    int32_t *bias, *mult, *shift;
    j.in = tensor((uint64_t)p->in_len * (uint64_t)p->in_ch, 1);
    j.w = tensor((uint64_t)p->kernel * out_ch, 1);
    j.out = tensor((uint64_t)p->out_len * out_ch, 0);
    if (!j.in || !j.w || !j.out || !quant_arrays(out_ch, &bias, &mult, &shift)) FAIL(MN_E_OUT_OF_RANGE, NO_ROOM);
    j.bias = bias;
    p->out_multiplier = mult;
    p->out_shift = shift;
    return mn_time_calls(run_dwconv, &j, count, st);
}

typedef struct {
    mn_fc_params p;
    const int8_t *in, *w;
    const int32_t *bias;
    int8_t *out;
} fc_job;

static void run_fc(const void *a) {
    const fc_job *j = a;
    mn_fc_s8(&j->p, j->in, j->w, j->bias, j->out);
}

static int bench_fc(const uint8_t *f, uint16_t nbytes, uint16_t count, mn_stats *st) {
    if (nbytes != 9 * 4) FAIL(MN_E_BAD_LENGTH, "fc params: 9 x i32");
    fc_job j;
    mn_fc_params *p = &j.p;
    p->batches = field(f, 0);
    p->in_features = field(f, 1);
    p->out_features = field(f, 2);
    p->input_offset = field(f, 3);
    p->filter_offset = field(f, 4);
    p->output_offset = field(f, 5);
    p->act_min = field(f, 6);
    p->act_max = field(f, 7);
    p->per_channel = field(f, 8);
    if (!dim_ok(p->batches) || !dim_ok(p->in_features) || !dim_ok(p->out_features))
        FAIL(MN_E_OUT_OF_RANGE, "fc sizes must be 1..16384");
    if (p->per_channel != 0 && p->per_channel != 1) FAIL(MN_E_OUT_OF_RANGE, "per_channel must be 0 or 1");
    if (!offset_ok(p->input_offset) || !offset_ok(p->filter_offset) || !offset_ok(p->output_offset) ||
        !act_ok(p->act_min, p->act_max))
        FAIL(MN_E_OUT_OF_RANGE, "offsets or activation range out of int8 range");
    scratch_reset();
    int32_t *bias, *mult, *shift, *unused_bias;
    j.in = tensor((uint64_t)p->batches * (uint64_t)p->in_features, 1);
    j.w = tensor((uint64_t)p->out_features * (uint64_t)p->in_features, 1);
    j.out = tensor((uint64_t)p->batches * (uint64_t)p->out_features, 0);
    bias = take(4ull * (uint64_t)p->out_features);
    if (!j.in || !j.w || !j.out || !bias ||
        !quant_arrays(p->per_channel ? (uint32_t)p->out_features : 1u, &unused_bias, &mult, &shift))
        FAIL(MN_E_OUT_OF_RANGE, NO_ROOM);
    memset(bias, 0, 4u * (uint32_t)p->out_features);
    j.bias = bias;
    p->out_multiplier = mult;
    p->out_shift = shift;
    return mn_time_calls(run_fc, &j, count, st);
}

int mn_svc_bench(uint8_t kernel, uint16_t count, const uint8_t *params, uint16_t nbytes, mn_stats *st) {
    switch (kernel) {
    case K_CONV:
        return bench_conv(params, nbytes, count, st);
    case K_DWCONV:
        return bench_dwconv(params, nbytes, count, st);
    case K_FC:
        return bench_fc(params, nbytes, count, st);
    default:
        mn_error_detail = "kernel not in this firmware (1 conv, 2 dwconv, 3 fc)";
        return MN_E_UNSUPPORTED;
    }
}
