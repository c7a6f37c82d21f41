/*
 * BENCH_OP: time one runtime kernel on synthetic data (docs/protocol.md, "BENCH_OP kernels").
 *
 * params are the kernel's parameter-struct fields as little-endian i32, in declaration order,
 * pointer fields omitted (arrays such as out_dims[4]: 4 consecutive i32). The firmware places the
 * kernel's tensors in scratch memory, first fit over two regions: the model arena (its content is
 * re-filled before every INVOKE, so this costs the model nothing) and a static buffer of
 * MN_BENCH_SCRATCH_BYTES. Every field is checked (BAD_LENGTH for a wrong params length,
 * OUT_OF_RANGE for a bad value or tensors that do not fit), so that no kernel can index outside
 * the tensors allocated here: the input sizes are computed from the params (broadcast strides,
 * slice begin/step, pad dims), not assumed.
 *
 * Data. Kernels 1-3: input and weights each hold the same fixed pseudo-random byte sequence,
 * biases are 0, every output multiplier is 1 << 30 (0.5 in Q31) with shift -8 (the fast
 * requantisation form of mn_internal.h, which the exporter's conv/FC scales take). Kernels 4-12:
 * the input tensors (ADD/MUL: in1, then in2) are filled in order from one pseudo-random stream
 * (the same generator and seed, so a single input holds the same bytes as for kernels 1-3).
 *
 * Timing: each call is timed as a generated model times a layer (LAYER below), so BENCH_OP
 * reports what INVOKE mode 1 reports for the same kernel call in a model.
 */
#include <string.h>

#include "micronas_model.h"
#include "micronas_runtime.h"
#include "protocol.h"

#ifndef MN_BENCH_SCRATCH_BYTES
#define MN_BENCH_SCRATCH_BYTES 16384u
#endif

enum {
    K_CONV = 1,
    K_DWCONV = 2,
    K_FC = 3,
    K_MEAN = 4,
    K_AVGPOOL = 5,
    K_MAXPOOL = 6,
    K_ADD = 7,
    K_MUL = 8,
    K_SOFTMAX = 9,
    K_LOGISTIC = 10,
    K_PAD = 11,
    K_SLICE = 12
};

#define MAX_DIM 16384 /* every size field: 1..MAX_DIM, so no index product overflows int32 */
#define MAX_ELEMS (1 << 24) /* fields that count the elements of several axes (merged dims, strides) */
#define MAX_TENSOR (1u << 26) /* bytes of one tensor; larger never fits anyway */
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

#define FILL_SEED 12345u

/* n bytes of the pseudo-random stream whose state is *x (an LCG, the top byte of each step) */
static void fill_stream(int8_t *p, uint32_t n, uint32_t *x) {
    for (uint32_t i = 0; i < n; ++i) {
        *x = *x * 1103515245u + 12345u;
        p[i] = (int8_t)(*x >> 24);
    }
}

static void fill_bytes(int8_t *p, uint32_t n) {
    uint32_t x = FILL_SEED;
    fill_stream(p, n, &x);
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
    if (n > MAX_TENSOR) return 0;
    int8_t *p = take(n);
    if (p && fill) fill_bytes(p, (uint32_t)n);
    return p;
}

static int32_t field(const uint8_t *params, int i) { return (int32_t)mn_rd32(params + 4 * i); }
static int dim_ok(int32_t v) { return v >= 1 && v <= MAX_DIM; }
static int offset_ok(int32_t v) { return v >= -MAX_OFFSET && v <= MAX_OFFSET; }
static int act_ok(int32_t lo, int32_t hi) { return -128 <= lo && lo <= hi && hi <= 127; }
static int in_range(int32_t v, int32_t lo, int32_t hi) { return v >= lo && v <= hi; }
static int int8_ok(int32_t v) { return in_range(v, -128, 127); } /* zero points, pad value */

/* params -> a struct made of int32 fields only (no pointers), in declaration order */
static void read_fields(void *dst, const uint8_t *params, int n) {
    for (int i = 0; i < n; ++i) {
        const int32_t v = field(params, i);
        memcpy((uint8_t *)dst + 4 * i, &v, 4);
    }
}

/* compile-time check that a params struct is exactly n int32 fields */
#define FIELDS(type, n) typedef char type##_is_##n##_i32[sizeof(type) == 4 * (n) ? 1 : -1]
FIELDS(mn_mean_params, 7);
FIELDS(mn_pool_params, 8);
FIELDS(mn_add_params, 24);
FIELDS(mn_mul_params, 19);
FIELDS(mn_softmax_params, 5);
FIELDS(mn_logistic_params, 5);
FIELDS(mn_pad_params, 13);
FIELDS(mn_slice_params, 16);

#define FAIL(code, text)          \
    do {                          \
        mn_error_detail = (text); \
        return (code);            \
    } while (0)
#define NO_ROOM "tensors do not fit the arena + scratch buffer"

/* ---- kernels ------------------------------------------------------------------------------- */

/* The timed window of one call (mn_time_calls): the kernel call bracketed by the profiling hooks
 * exactly as a generated model brackets a layer (MN_LAYER_BEGIN/END), so BENCH_OP counts what
 * INVOKE mode 1 reports for the layer: the hooks' own instructions after and before their timer
 * reads, the argument set-up and the call. The wrappers copy the job's fields to locals before
 * the window, so inside it the arguments are register moves (one instruction each, as the
 * model's constant addresses are) and not loads through the job; the empty asm after the end
 * hook keeps the wrapper's epilogue (stack release, register restore) out of the window (else
 * GCC would run it before a tail call to micronas_profile_end). */
#define LAYER(call)                        \
    do {                                   \
        micronas_profile_begin(-1);        \
        call;                              \
        micronas_profile_end(-1);          \
        __asm__ volatile("" ::: "memory"); \
    } while (0)

typedef struct {
    mn_conv_params p;
    const int8_t *in, *w;
    const int32_t *bias;
    int8_t *out;
} conv_job;

static void run_conv(const void *a) {
    const conv_job *j = a;
    const int8_t *in = j->in, *w = j->w;
    const int32_t *bias = j->bias;
    int8_t *out = j->out;
    LAYER(mn_conv_s8(&j->p, in, w, bias, out));
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
    const int8_t *in = j->in, *w = j->w;
    const int32_t *bias = j->bias;
    int8_t *out = j->out;
    LAYER(mn_dwconv_s8(&j->p, in, w, bias, out));
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
    const int8_t *in = j->in, *w = j->w;
    const int32_t *bias = j->bias;
    int8_t *out = j->out;
    LAYER(mn_fc_s8(&j->p, in, w, bias, out));
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

/* ---- kernels 4-12: one params struct, one or two inputs, one output ------------------------ */

typedef struct {
    const void *p;
    const int8_t *in, *in2;
    int8_t *out;
} io_job;

/* The kernel call, between the layer hooks, with its arguments loaded into locals first (as a
 * generated model passes them: no loads inside the timed region). */
#define UNARY_RUNNER(name, kernel)           \
    static void name(const void *a) {        \
        const io_job *j = a;                 \
        const void *p = j->p;                \
        const int8_t *in = j->in;            \
        int8_t *out = j->out;                \
        LAYER(kernel(p, in, out));           \
    }
#define BINARY_RUNNER(name, kernel)                   \
    static void name(const void *a) {                 \
        const io_job *j = a;                          \
        const void *p = j->p;                         \
        const int8_t *in = j->in, *in2 = j->in2;      \
        int8_t *out = j->out;                         \
        LAYER(kernel(p, in, in2, out));               \
    }

UNARY_RUNNER(run_mean, mn_mean_s8)
UNARY_RUNNER(run_avgpool, mn_avgpool_s8)
UNARY_RUNNER(run_maxpool, mn_maxpool_s8)
BINARY_RUNNER(run_add, mn_add_s8)
BINARY_RUNNER(run_mul, mn_mul_s8)
UNARY_RUNNER(run_softmax, mn_softmax_s8)
UNARY_RUNNER(run_logistic, mn_logistic_s8)
UNARY_RUNNER(run_pad, mn_pad_s8)
UNARY_RUNNER(run_slice, mn_strided_slice_s8)

/* Allocate the job's tensors (in1 and in2 filled in that order from one stream, out not) and
 * time it. in2_bytes 0: no second input. */
static int run_io(io_job *j, void (*fn)(const void *), uint64_t in_bytes, uint64_t in2_bytes, uint64_t out_bytes,
                  uint16_t count, mn_stats *st) {
    scratch_reset();
    uint32_t x = FILL_SEED;
    int8_t *in = tensor(in_bytes, 0), *in2 = in2_bytes ? tensor(in2_bytes, 0) : 0;
    j->out = tensor(out_bytes, 0);
    if (!in || (in2_bytes && !in2) || !j->out) FAIL(MN_E_OUT_OF_RANGE, NO_ROOM);
    fill_stream(in, (uint32_t)in_bytes, &x);
    if (in2) fill_stream(in2, (uint32_t)in2_bytes, &x);
    j->in = in;
    j->in2 = in2;
    return mn_time_calls(fn, j, count, st);
}

static int bench_mean(const uint8_t *f, uint16_t nbytes, uint16_t count, mn_stats *st) {
    if (nbytes != 7 * 4) FAIL(MN_E_BAD_LENGTH, "mean params: 7 x i32");
    mn_mean_params p;
    read_fields(&p, f, 7);
    if (!in_range(p.outer, 1, MAX_ELEMS) || !dim_ok(p.reduce) || !in_range(p.inner, 1, MAX_ELEMS))
        FAIL(MN_E_OUT_OF_RANGE, "mean sizes: outer, inner 1..16777216, reduce 1..16384");
    if (!int8_ok(p.input_zero_point) || !int8_ok(p.output_zero_point))
        FAIL(MN_E_OUT_OF_RANGE, "mean zero points must be -128..127");
    if (p.multiplier < 0 || !in_range(p.shift, -31, 30))
        FAIL(MN_E_OUT_OF_RANGE, "mean multiplier must be >= 0 and shift -31..30");
    io_job j = {&p, 0, 0, 0};
    const uint64_t outer = (uint64_t)p.outer, inner = (uint64_t)p.inner;
    return run_io(&j, run_mean, outer * (uint64_t)p.reduce * inner, 0, outer * inner, count, st);
}

static int bench_pool(const uint8_t *f, uint16_t nbytes, uint16_t count, mn_stats *st, int max) {
    if (nbytes != 8 * 4) FAIL(MN_E_BAD_LENGTH, "pool params: 8 x i32");
    mn_pool_params p;
    read_fields(&p, f, 8);
    if (!dim_ok(p.in_len) || !dim_ok(p.ch) || !dim_ok(p.out_len) || !dim_ok(p.filter) || !dim_ok(p.stride) ||
        !in_range(p.pad_before, 0, MAX_DIM))
        FAIL(MN_E_OUT_OF_RANGE, "pool sizes must be 1..16384 (pad_before 0..16384)");
    /* window t covers inputs [t*stride - pad_before, + filter) clipped to the input: the first
     * and the last window (and so every one between) must hold at least one input */
    if (p.pad_before >= p.filter || (int64_t)(p.out_len - 1) * p.stride - p.pad_before >= p.in_len)
        FAIL(MN_E_OUT_OF_RANGE, "every pool window must cover an input: pad_before < filter and "
                                "(out_len-1)*stride - pad_before < in_len");
    if (!act_ok(p.act_min, p.act_max)) FAIL(MN_E_OUT_OF_RANGE, "activation range out of int8 range");
    io_job j = {&p, 0, 0, 0};
    const uint64_t ch = (uint64_t)p.ch;
    return run_io(&j, max ? run_maxpool : run_avgpool, (uint64_t)p.in_len * ch, 0, (uint64_t)p.out_len * ch, count,
                  st);
}

/* Elements an input walked with `strides` over `dims` spans: 1 + the largest index. */
static uint64_t span(const int32_t dims[4], const int32_t strides[4]) {
    uint64_t n = 1;
    for (int d = 0; d < 4; ++d) n += (uint64_t)(dims[d] - 1) * (uint64_t)strides[d];
    return n;
}

/* Check the broadcast shape; *n1, *n2, *nout: elements of in1, in2 and the output. */
static int broadcast_check(const mn_broadcast *s, uint64_t *n1, uint64_t *n2, uint64_t *nout) {
    uint64_t n = 1;
    for (int d = 0; d < 4; ++d) {
        if (!in_range(s->out_dims[d], 1, MAX_ELEMS) || !in_range(s->in1_strides[d], 0, MAX_ELEMS) ||
            !in_range(s->in2_strides[d], 0, MAX_ELEMS))
            FAIL(MN_E_OUT_OF_RANGE, "broadcast out_dims must be 1..16777216, strides 0..16777216");
        n *= (uint64_t)s->out_dims[d]; /* < 2^96 never: each factor < 2^25 and n is capped below */
        if (n > MAX_TENSOR) FAIL(MN_E_OUT_OF_RANGE, NO_ROOM);
    }
    *nout = n;
    *n1 = span(s->out_dims, s->in1_strides);
    *n2 = span(s->out_dims, s->in2_strides);
    return MN_OK;
}

static int bench_add(const uint8_t *f, uint16_t nbytes, uint16_t count, mn_stats *st) {
    if (nbytes != 24 * 4) FAIL(MN_E_BAD_LENGTH, "add params: 24 x i32");
    mn_add_params p;
    read_fields(&p, f, 24);
    uint64_t n1, n2, nout;
    int rc = broadcast_check(&p.shape, &n1, &n2, &nout);
    if (rc != MN_OK) return rc;
    if (!offset_ok(p.input1_offset) || !offset_ok(p.input2_offset) || !offset_ok(p.output_offset) ||
        !act_ok(p.act_min, p.act_max))
        FAIL(MN_E_OUT_OF_RANGE, "offsets or activation range out of int8 range");
    /* (x + offset) << left_shift stays below 2^30; input scales below one (shift <= 0), so the
     * sum of the two rescaled inputs cannot overflow */
    if (!in_range(p.left_shift, 0, 20)) FAIL(MN_E_OUT_OF_RANGE, "add left_shift must be 0..20");
    if (p.input1_multiplier < 0 || p.input2_multiplier < 0 || p.output_multiplier < 0 ||
        !in_range(p.input1_shift, -31, 0) || !in_range(p.input2_shift, -31, 0) || !in_range(p.output_shift, -31, 30))
        FAIL(MN_E_OUT_OF_RANGE, "add multipliers must be >= 0, input shifts -31..0, output shift -31..30");
    io_job j = {&p, 0, 0, 0};
    return run_io(&j, run_add, n1, n2, nout, count, st);
}

static int bench_mul(const uint8_t *f, uint16_t nbytes, uint16_t count, mn_stats *st) {
    if (nbytes != 19 * 4) FAIL(MN_E_BAD_LENGTH, "mul params: 19 x i32");
    mn_mul_params p;
    read_fields(&p, f, 19);
    uint64_t n1, n2, nout;
    int rc = broadcast_check(&p.shape, &n1, &n2, &nout);
    if (rc != MN_OK) return rc;
    if (!offset_ok(p.input1_offset) || !offset_ok(p.input2_offset) || !offset_ok(p.output_offset) ||
        !act_ok(p.act_min, p.act_max))
        FAIL(MN_E_OUT_OF_RANGE, "offsets or activation range out of int8 range");
    if (p.output_multiplier < 0 || !in_range(p.output_shift, -31, 30))
        FAIL(MN_E_OUT_OF_RANGE, "mul output_multiplier must be >= 0 and output_shift -31..30");
    io_job j = {&p, 0, 0, 0};
    return run_io(&j, run_mul, n1, n2, nout, count, st);
}

static int bench_softmax(const uint8_t *f, uint16_t nbytes, uint16_t count, mn_stats *st) {
    if (nbytes != 5 * 4) FAIL(MN_E_BAD_LENGTH, "softmax params: 5 x i32");
    mn_softmax_params p;
    read_fields(&p, f, 5);
    /* depth <= 511: the sum of exps stays below 2^28 and the output shift within 31 bits
     * (the exporter's limit, TFLM's check) */
    if (!in_range(p.outer, 1, MAX_ELEMS) || !in_range(p.depth, 1, 511))
        FAIL(MN_E_OUT_OF_RANGE, "softmax outer must be 1..16777216 and depth 1..511");
    /* diff_min <= 0 keeps the row maximum (diff 0) in the sum, which must be > 0; every diff the
     * kernel scales (diff_min <= diff <= 0, |diff| <= 255) must not overflow the left shift */
    const int64_t worst = p.diff_min < -255 ? 255 : -(int64_t)p.diff_min;
    if (p.input_multiplier < 0 || !in_range(p.input_left_shift, 0, 31) || p.diff_min > 0 ||
        (worst << p.input_left_shift) > INT32_MAX)
        FAIL(MN_E_OUT_OF_RANGE, "softmax input_multiplier must be >= 0, input_left_shift 0..31, diff_min <= 0 "
                                "with min(-diff_min, 255) << input_left_shift below 2^31");
    io_job j = {&p, 0, 0, 0};
    const uint64_t n = (uint64_t)p.outer * (uint64_t)p.depth;
    return run_io(&j, run_softmax, n, 0, n, count, st);
}

static int bench_logistic(const uint8_t *f, uint16_t nbytes, uint16_t count, mn_stats *st) {
    if (nbytes != 5 * 4) FAIL(MN_E_BAD_LENGTH, "logistic params: 5 x i32");
    mn_logistic_params p;
    read_fields(&p, f, 5);
    if (!in_range(p.size, 1, MAX_ELEMS)) FAIL(MN_E_OUT_OF_RANGE, "logistic size must be 1..16777216");
    if (!int8_ok(p.input_zero_point)) FAIL(MN_E_OUT_OF_RANGE, "logistic input_zero_point must be -128..127");
    /* inputs the kernel scales have |x - zero point| < min(radius, 256): no overflow of the shift */
    const int64_t worst = p.input_range_radius > 256 ? 256 : (int64_t)p.input_range_radius;
    if (p.input_range_radius < 0 || p.input_multiplier < 0 || !in_range(p.input_left_shift, 0, 31) ||
        (worst << p.input_left_shift) > ((int64_t)1 << 31))
        FAIL(MN_E_OUT_OF_RANGE, "logistic radius and multiplier must be >= 0, input_left_shift 0..31, "
                                "min(radius, 256) << input_left_shift at most 2^31");
    io_job j = {&p, 0, 0, 0};
    return run_io(&j, run_logistic, (uint64_t)p.size, 0, (uint64_t)p.size, count, st);
}

static int bench_pad(const uint8_t *f, uint16_t nbytes, uint16_t count, mn_stats *st) {
    if (nbytes != 13 * 4) FAIL(MN_E_BAD_LENGTH, "pad params: 13 x i32");
    mn_pad_params p;
    read_fields(&p, f, 13);
    uint64_t nin = 1, nout = 1;
    for (int d = 0; d < 4; ++d) {
        if (!dim_ok(p.in_dims[d]) || !in_range(p.pad_before[d], 0, MAX_DIM) || !in_range(p.pad_after[d], 0, MAX_DIM))
            FAIL(MN_E_OUT_OF_RANGE, "pad in_dims must be 1..16384, pad_before and pad_after 0..16384");
        nin *= (uint64_t)p.in_dims[d]; /* each factor < 2^16: no uint64 overflow */
        nout *= (uint64_t)(p.pad_before[d] + p.in_dims[d] + p.pad_after[d]);
    }
    if (!int8_ok(p.pad_value)) FAIL(MN_E_OUT_OF_RANGE, "pad_value must be -128..127");
    io_job j = {&p, 0, 0, 0};
    return run_io(&j, run_pad, nin, 0, nout, count, st);
}

static int bench_slice(const uint8_t *f, uint16_t nbytes, uint16_t count, mn_stats *st) {
    if (nbytes != 16 * 4) FAIL(MN_E_BAD_LENGTH, "strided_slice params: 16 x i32");
    mn_slice_params p;
    read_fields(&p, f, 16);
    uint64_t nin = 1, nout = 1;
    for (int d = 0; d < 4; ++d) {
        if (!dim_ok(p.out_dims[d]) || !in_range(p.in_strides[d], 0, MAX_ELEMS) || p.step[d] == 0 ||
            !in_range(p.step[d], -MAX_DIM, MAX_DIM) || !in_range(p.begin[d], 0, MAX_ELEMS))
            FAIL(MN_E_OUT_OF_RANGE, "strided_slice out_dims must be 1..16384, in_strides 0..16777216, begin "
                                    "0..16777216, step +-1..16384");
        /* the axis index runs from begin to begin + (out_dims-1)*step: both ends inside 0..2^24 */
        const int64_t last = (int64_t)p.begin[d] + (int64_t)(p.out_dims[d] - 1) * p.step[d];
        if (last < 0 || last > MAX_ELEMS)
            FAIL(MN_E_OUT_OF_RANGE, "strided_slice begin + (out_dims-1)*step must be 0..16777216 on every axis");
        const int64_t top = last > p.begin[d] ? last : p.begin[d];
        /* a step-1 innermost axis is copied as one contiguous run (its in_stride is not used) */
        const int64_t stride = d == 3 && p.step[3] == 1 ? 1 : p.in_strides[d];
        nin += (uint64_t)top * (uint64_t)stride; /* < 2^50 */
        nout *= (uint64_t)p.out_dims[d];
    }
    io_job j = {&p, 0, 0, 0};
    return run_io(&j, run_slice, nin, 0, nout, count, st);
}

int mn_svc_bench(uint8_t kernel, uint16_t count, const uint8_t *params, uint16_t nbytes, mn_stats *st) {
    switch (kernel) {
    case K_CONV:
        return bench_conv(params, nbytes, count, st);
    case K_DWCONV:
        return bench_dwconv(params, nbytes, count, st);
    case K_FC:
        return bench_fc(params, nbytes, count, st);
    case K_MEAN:
        return bench_mean(params, nbytes, count, st);
    case K_AVGPOOL:
        return bench_pool(params, nbytes, count, st, 0);
    case K_MAXPOOL:
        return bench_pool(params, nbytes, count, st, 1);
    case K_ADD:
        return bench_add(params, nbytes, count, st);
    case K_MUL:
        return bench_mul(params, nbytes, count, st);
    case K_SOFTMAX:
        return bench_softmax(params, nbytes, count, st);
    case K_LOGISTIC:
        return bench_logistic(params, nbytes, count, st);
    case K_PAD:
        return bench_pad(params, nbytes, count, st);
    case K_SLICE:
        return bench_slice(params, nbytes, count, st);
    default:
        mn_error_detail = "kernel not in this firmware (1..12: conv, dwconv, fc, mean, avgpool, maxpool, add, mul, "
                          "softmax, logistic, pad, strided_slice)";
        return MN_E_UNSUPPORTED;
    }
}
