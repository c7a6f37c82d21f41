/*
 * BENCH_OP: time one runtime kernel on synthetic data (docs/protocol.md, "BENCH_OP kernels").
 *
 * params are the kernel's parameter-struct fields as little-endian i32, in declaration order,
 * pointer fields omitted (arrays such as out_dims[4]: 4 consecutive i32). What each op does with
 * them (its fields, checks, tensors and call) is the generated dispatcher micronas_bench.c,
 * rendered from the runtime-op registry; this file holds what no op owns: the protocol glue
 * (kernel id and params length), scratch memory and the fill stream.
 *
 * Scratch: the kernel's tensors go first fit over two regions, the model arena (its content is
 * re-filled before every INVOKE, so this costs the model nothing) and a static buffer of
 * MN_BENCH_SCRATCH_BYTES.
 *
 * Data: one pseudo-random generator (an LCG from MN_BENCH_SEED); an op fills its inputs either
 * each from the seed (convolutions and FC: input and weights hold the same bytes) or in order
 * from one stream (the others; ADD/MUL: in1, then in2), so a single input holds the same bytes
 * either way.
 *
 * Timing: each call is timed as a generated model times a layer (MN_BENCH_LAYER, bench.h), so
 * BENCH_OP reports what INVOKE mode 1 reports for the same kernel call in a model.
 */
#include "bench.h"

#include "micronas_model.h"

#ifndef MN_BENCH_SCRATCH_BYTES
#define MN_BENCH_SCRATCH_BYTES 16384u
#endif

__attribute__((aligned(16))) static int8_t scratch[MN_BENCH_SCRATCH_BYTES];

/* ---- scratch allocation ------------------------------------------------------------------ */

typedef struct {
    uint8_t *base;
    uint32_t size, used;
} region;

static region regions[2];

void mn_bench_reset(void) {
    regions[0].base = (uint8_t *)micronas_arena();
    regions[0].size = MICRONAS_ARENA_BYTES;
    regions[1].base = (uint8_t *)scratch;
    regions[1].size = MN_BENCH_SCRATCH_BYTES;
    regions[0].used = regions[1].used = 0;
}

void *mn_bench_take(uint64_t n, uint32_t elem_bytes) {
    if (n > MN_BENCH_MAX_TENSOR / elem_bytes) return 0;
    const uint32_t bytes = (uint32_t)((n * elem_bytes + 3u) & ~(uint64_t)3u);
    for (int i = 0; i < 2; ++i) {
        region *r = &regions[i];
        if (r->size - r->used >= bytes) {
            void *p = r->base + r->used;
            r->used += bytes;
            return p;
        }
    }
    return 0;
}

/* ---- data ------------------------------------------------------------------------------------ */

void mn_bench_fill(int8_t *p, uint64_t n, uint32_t *state) {
    for (uint32_t i = 0; i < (uint32_t)n; ++i) {
        *state = *state * 1103515245u + 12345u;
        p[i] = (int8_t)(*state >> 24);
    }
}

void mn_bench_fill_seeded(int8_t *p, uint64_t n) {
    uint32_t x = MN_BENCH_SEED;
    mn_bench_fill(p, n, &x);
}

void mn_bench_set_i32(int32_t *p, uint64_t n, int32_t value) {
    for (uint32_t i = 0; i < (uint32_t)n; ++i) p[i] = value;
}

/* ---- sizes ----------------------------------------------------------------------------------- */

uint64_t mn_bench_elems(const int32_t dims[4]) {
    uint64_t n = 1;
    for (int d = 0; d < 4; ++d) {
        n *= (uint64_t)dims[d]; /* each factor < 2^25 and n is capped below: no overflow */
        if (n > MN_BENCH_MAX_TENSOR) return (uint64_t)MN_BENCH_MAX_TENSOR + 1u;
    }
    return n;
}

uint64_t mn_bench_span(const int32_t dims[4], const int32_t strides[4]) {
    uint64_t n = 1;
    for (int d = 0; d < 4; ++d) n += (uint64_t)(dims[d] - 1) * (uint64_t)strides[d];
    return n;
}

/* ---- the protocol ---------------------------------------------------------------------------- */

int mn_svc_bench(uint8_t kernel, uint16_t count, const uint8_t *params, uint16_t nbytes, mn_stats *st) {
    for (unsigned i = 0; i < mn_bench_num_kernels; ++i) {
        const mn_bench_kernel *k = &mn_bench_kernels[i];
        if (k->id != kernel) continue;
        if (nbytes != 4u * k->fields) {
            mn_error_detail = k->bad_length;
            return MN_E_BAD_LENGTH;
        }
        return k->run(params, count, st);
    }
    mn_error_detail = mn_bench_unsupported;
    return MN_E_UNSUPPORTED;
}
