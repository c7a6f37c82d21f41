/*
 * Device side of the micronas serial protocol (docs/protocol.md, version 1).
 *
 * protocol.c owns the framing (SYNC hunt, LEN check, CRC-16/CCITT-FALSE), decodes each request
 * payload, checks its length and ranges, and sends the reply or an ERROR. The work behind the
 * requests (running the model, canaries, kernel benchmarks) is in main.c and bench.c, behind the
 * mn_svc_* functions below.
 */
#ifndef MN_PROTOCOL_H_
#define MN_PROTOCOL_H_

#include <stdint.h>

#define MN_PROTOCOL_VERSION 1u
#define MN_SYNC 0xA5u
#define MN_MAX_PAYLOAD 512u

/* request TYPEs; a reply has TYPE | 0x80, or MN_T_ERROR */
enum {
    MN_T_HELLO = 0x01,
    MN_T_SET_INPUT = 0x02,
    MN_T_INVOKE = 0x03,
    MN_T_GET_OUTPUT = 0x04,
    MN_T_GET_LAYERS = 0x05,
    MN_T_GET_MEMORY = 0x06,
    MN_T_BENCH_OP = 0x07,
    MN_T_RESET_STATS = 0x08,
    MN_T_ERROR = 0xFF
};

/* ERROR codes; 0 means success where a function returns one of these */
enum {
    MN_OK = 0,
    MN_E_BAD_CRC = 1,
    MN_E_BAD_LENGTH = 2,
    MN_E_UNKNOWN_TYPE = 3,
    MN_E_OUT_OF_RANGE = 4,
    MN_E_UNSUPPORTED = 5,
    MN_E_TIMER = 6
};

/* Timing statistics of INVOKE and BENCH_OP (ticks of the timer in timer.h). */
typedef struct {
    uint16_t count;
    uint32_t min_ticks, max_ticks;
    uint64_t sum_ticks;
} mn_stats;

/* Call once at boot; timer_ok = mn_timer_init()'s result (the receive timeout needs the timer). */
void mn_protocol_init(int timer_ok);
/* Receive one request, execute it, send its reply. Blocks until a frame arrives. */
void mn_protocol_poll(void);

/* ---- services (main.c, bench.c) ------------------------------------------------------------
 * A service returns MN_OK or an ERROR code; it may set mn_error_detail to a short ASCII reason
 * (protocol.c supplies a generic one otherwise). */
extern const char *mn_error_detail;

extern int8_t mn_input[];        /* MICRONAS_INPUT_BYTES */
extern int8_t mn_output[];       /* MICRONAS_OUTPUT_BYTES */
extern uint32_t mn_layer_ticks[]; /* MICRONAS_NUM_LAYERS */

/* Run the model `count` (>= 1) times; mode 0 times the whole model, mode 1 each layer. */
int mn_svc_invoke(uint16_t count, uint8_t mode, mn_stats *st);
/* arena_bytes, arena_high_water, stack_bytes, stack_high_water */
void mn_svc_memory(uint32_t out[4]);
/* Forget the high-water marks and re-fill the arena and stack canaries. */
void mn_svc_reset_stats(void);
/* Time one kernel `count` (>= 1) times; params as little-endian i32 fields (docs/protocol.md). */
int mn_svc_bench(uint8_t kernel, uint16_t count, const uint8_t *params, uint16_t nbytes, mn_stats *st);

/* Run `count` calls of fn(arg), each timed as a model layer: fn brackets its kernel call with
 * micronas_profile_begin(-1) / micronas_profile_end(-1) (main.c; used by bench.c). */
int mn_time_calls(void (*fn)(const void *), const void *arg, uint16_t count, mn_stats *st);

/* Accumulate one measurement into st (count, min, max, sum). */
void mn_stats_add(mn_stats *st, uint64_t ticks);

/* little-endian access (the Cortex-M cores here are little-endian, but say so explicitly) */
static inline uint16_t mn_rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t mn_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint8_t *mn_wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}
static inline uint8_t *mn_wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
    return p + 4;
}

#endif /* MN_PROTOCOL_H_ */
