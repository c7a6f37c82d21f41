/*
 * BENCH_OP: what the profiling firmware gives the generated per-op dispatcher (micronas_bench.c,
 * rendered from the runtime-op registry by firmware_export): the timed window of one kernel
 * call, scratch memory, the pseudo-random fill stream, range checks and the kernel table the
 * protocol glue (bench.c) dispatches on. Nothing here knows any op.
 */
#ifndef MN_BENCH_H_
#define MN_BENCH_H_

#include <stdint.h>

#include "protocol.h"

#define MN_BENCH_MAX_DIM 16384         /* every size field: 1..MAX_DIM, so no index product overflows int32 */
#define MN_BENCH_MAX_ELEMS (1 << 24)   /* fields that count the elements of several axes (merged dims, strides) */
#define MN_BENCH_MAX_TENSOR (1u << 26) /* bytes of one tensor; larger never fits anyway */
#define MN_BENCH_MAX_OFFSET 256        /* zero-point offsets: |offset| <= MAX_OFFSET */
#define MN_BENCH_SEED 12345u           /* the fill stream's seed */
#define MN_BENCH_NO_ROOM "tensors do not fit the arena + scratch buffer"

/* The timed window of one call (mn_time_calls): the kernel call bracketed by the profiling hooks
 * exactly as a generated model brackets a layer (MN_LAYER_BEGIN/END), so BENCH_OP counts what
 * INVOKE mode 1 reports for the layer: the hooks' own instructions after and before their timer
 * reads, the argument set-up and the call. The runners copy the job's fields to locals before
 * the window, so inside it the arguments are register moves (one instruction each, as the
 * model's constant addresses are) and not loads through the job; the empty asm after the end
 * hook keeps the runner's epilogue (stack release, register restore) out of the window (else
 * GCC would run it before a tail call to micronas_profile_end). */
void micronas_profile_begin(int layer);
void micronas_profile_end(int layer);
#define MN_BENCH_LAYER(call)               \
    do {                                   \
        micronas_profile_begin(-1);        \
        call;                              \
        micronas_profile_end(-1);          \
        __asm__ volatile("" ::: "memory"); \
    } while (0)

/* A request that breaks a rule: OUT_OF_RANGE with the rule as the detail. */
#define MN_BENCH_FAIL(text)                 \
    do {                                    \
        mn_error_detail = (text);           \
        return MN_E_OUT_OF_RANGE;           \
    } while (0)

/* One op of the dispatcher: its kernel id, the i32 count of its params and the handler, which
 * reads, checks, allocates and times (the glue has checked the length). */
typedef struct {
    uint8_t id;
    uint8_t fields;
    const char *bad_length; /* the BAD_LENGTH detail */
    int (*run)(const uint8_t *params, uint16_t count, mn_stats *st);
} mn_bench_kernel;

extern const mn_bench_kernel mn_bench_kernels[];
extern const unsigned mn_bench_num_kernels;
extern const char mn_bench_unsupported[]; /* the UNSUPPORTED detail: the ids and ops held */

/* field i of the request (little-endian i32) */
static inline int32_t mn_bench_field(const uint8_t *params, int i) { return (int32_t)mn_rd32(params + 4 * i); }
static inline int mn_bench_in(int32_t v, int32_t lo, int32_t hi) { return v >= lo && v <= hi; }
static inline int mn_bench_act_ok(int32_t lo, int32_t hi) { return -128 <= lo && lo <= hi && hi <= 127; }

/* Forget every allocation: the next take starts at the bottom of the arena. */
void mn_bench_reset(void);
/* n elements of elem_bytes from the first scratch region with room, 4-byte aligned; 0 when more
 * than MN_BENCH_MAX_TENSOR bytes or no room. */
void *mn_bench_take(uint64_t n, uint32_t elem_bytes);
/* n bytes of the pseudo-random stream whose state is *state (an LCG, the top byte of each step) */
void mn_bench_fill(int8_t *p, uint64_t n, uint32_t *state);
/* n bytes of the stream from MN_BENCH_SEED: every tensor filled so holds the same bytes */
void mn_bench_fill_seeded(int8_t *p, uint64_t n);
void mn_bench_set_i32(int32_t *p, uint64_t n, int32_t value);
/* Elements of dims[0] x .. x dims[3] (each 1..2^24), capped just above MN_BENCH_MAX_TENSOR. */
uint64_t mn_bench_elems(const int32_t dims[4]);
/* Elements an input walked with `strides` over `dims` spans: 1 + the largest index. */
uint64_t mn_bench_span(const int32_t dims[4], const int32_t strides[4]);

#endif /* MN_BENCH_H_ */
