/*
 * micronas profiling firmware: runs the generated model (micronas_model.c) on request from the
 * host over the serial protocol of docs/protocol.md, and measures its time and memory.
 *
 * Timing (timer.h): every measured window starts after mn_timer_sync() and is read with
 * mn_timer_now() at both ends; the cost of an empty window (the two timer reads), measured at
 * boot, is subtracted from every figure.
 *   INVOKE mode 0: one window around micronas_invoke() per repetition (input copy-in and
 *                  output copy-out included).
 *   INVOKE mode 1: one window per layer, opened in micronas_profile_begin() and closed in
 *                  micronas_profile_end(); a repetition's ticks are the sum of its layers (the
 *                  waits for a timer edge between layers are not counted). mn_layer_ticks keeps
 *                  the last repetition's layers for GET_LAYERS.
 *
 * Memory canaries:
 *   arena  Before each repetition of an INVOKE the arena is filled with a pattern, alternately
 *          0xA5 (even repetitions) and 0x5A (odd ones); after it, the arena is scanned from the
 *          top for the highest byte that differs from that pattern. With count == 1 an extra,
 *          untimed run with 0x5A follows, so every INVOKE sees both patterns: a byte the model
 *          wrote that happens to equal one pattern is caught by the other. arena_high_water is
 *          the maximum over every run since boot or the last RESET_STATS. (BENCH_OP also uses
 *          the arena as scratch; it does not touch the high-water mark.)
 *   stack  At boot and on RESET_STATS, the stack from its bottom up to 64 bytes below the
 *          current stack pointer is filled with 0xA5; GET_MEMORY scans up from the bottom for the
 *          first byte that changed: stack_high_water = stack top - that address.
 */
#include <string.h>

#include "micronas_model.h"
#include "protocol.h"
#include "timer.h"
#include "uart.h"

#define ARENA_PATTERN_A 0xA5u
#define ARENA_PATTERN_B 0x5Au
#define STACK_PATTERN 0xA5u
#define STACK_MARGIN 64u /* bytes left unfilled below the stack pointer of the filling function */

#define NUM_LAYER_SLOTS (MICRONAS_NUM_LAYERS > 0 ? MICRONAS_NUM_LAYERS : 1)

extern uint8_t _stack_bottom[], _stack_top[]; /* link.ld */

__attribute__((aligned(16))) int8_t mn_input[MICRONAS_INPUT_BYTES];
__attribute__((aligned(16))) int8_t mn_output[MICRONAS_OUTPUT_BYTES];
uint32_t mn_layer_ticks[NUM_LAYER_SLOTS];

static int timer_ok;
static uint32_t window_overhead; /* ticks of an empty measured window */
static uint32_t arena_high_water;

/* ---- timing ---------------------------------------------------------------------------------- */

static uint64_t net(uint64_t ticks) { return ticks > window_overhead ? ticks - window_overhead : 0; }

static void calibrate(void) {
    uint64_t best = ~(uint64_t)0;
    for (int i = 0; i < 8; ++i) {
        mn_timer_sync();
        uint64_t t0 = mn_timer_now();
        uint64_t t1 = mn_timer_now();
        if (t1 - t0 < best) best = t1 - t0;
    }
    window_overhead = best > 0xFFFFu ? 0 : (uint32_t)best;
}

static int profiling;         /* per-layer windows wanted (INVOKE mode 1) */
static uint64_t layer_start;
static uint64_t layers_sum;

void micronas_profile_begin(int layer) {
    (void)layer;
    if (!profiling) return;
    mn_timer_sync();
    layer_start = mn_timer_now();
}

void micronas_profile_end(int layer) {
    if (!profiling) return;
    uint64_t t = net(mn_timer_now() - layer_start);
    if (layer >= 0 && layer < (int)NUM_LAYER_SLOTS) mn_layer_ticks[layer] = t > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)t;
    layers_sum += t;
}

/* ---- canaries -------------------------------------------------------------------------------- */

static void arena_fill(uint8_t pattern) { memset(micronas_arena(), pattern, MICRONAS_ARENA_BYTES); }

/* one past the highest arena byte that differs from `pattern` */
static uint32_t arena_scan(uint8_t pattern) {
    const uint8_t *a = (const uint8_t *)micronas_arena();
    uint32_t n = MICRONAS_ARENA_BYTES;
    while (n > 0 && a[n - 1] == pattern) --n;
    return n;
}

static void arena_note(uint8_t pattern) {
    uint32_t hw = arena_scan(pattern);
    if (hw > arena_high_water) arena_high_water = hw;
}

__attribute__((noinline)) static void stack_fill(void) {
    uint8_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (volatile uint8_t *p = _stack_bottom; p < sp - STACK_MARGIN; ++p) *p = STACK_PATTERN;
}

static uint32_t stack_scan(void) {
    const volatile uint8_t *p = _stack_bottom;
    while (p < _stack_top && *p == STACK_PATTERN) ++p;
    return (uint32_t)(_stack_top - (const uint8_t *)p);
}

/* ---- services -------------------------------------------------------------------------------- */

int mn_svc_invoke(uint16_t count, uint8_t mode, mn_stats *st) {
    if (!timer_ok) {
        mn_error_detail = "the cycle counter does not advance";
        return MN_E_TIMER;
    }
    memset(st, 0, sizeof *st);
    for (uint32_t r = 0; r < count; ++r) {
        const uint8_t pattern = (r & 1u) ? ARENA_PATTERN_B : ARENA_PATTERN_A;
        arena_fill(pattern);
        uint64_t ticks;
        if (mode == 0) {
            mn_timer_sync();
            uint64_t t0 = mn_timer_now();
            micronas_invoke(mn_input, mn_output);
            ticks = net(mn_timer_now() - t0);
        } else {
            layers_sum = 0;
            profiling = 1;
            micronas_invoke(mn_input, mn_output);
            profiling = 0;
            ticks = layers_sum;
        }
        arena_note(pattern);
        mn_stats_add(st, ticks);
    }
    if (count == 1) { /* the second canary pattern, untimed */
        arena_fill(ARENA_PATTERN_B);
        micronas_invoke(mn_input, mn_output);
        arena_note(ARENA_PATTERN_B);
    }
    return MN_OK;
}

void mn_svc_memory(uint32_t out[4]) {
    out[0] = MICRONAS_ARENA_BYTES;
    out[1] = arena_high_water;
    out[2] = (uint32_t)(_stack_top - _stack_bottom);
    out[3] = stack_scan();
}

void mn_svc_reset_stats(void) {
    arena_high_water = 0;
    arena_fill(ARENA_PATTERN_A);
    stack_fill();
}

/* Run `count` calls of fn(arg) for BENCH_OP (bench.c). fn times its kernel call as a model
 * layer is timed: micronas_profile_begin(-1), the call, micronas_profile_end(-1) (layer -1: no
 * mn_layer_ticks slot), so a call's ticks are what INVOKE mode 1 reports for that layer. */
int mn_time_calls(void (*fn)(const void *), const void *arg, uint16_t count, mn_stats *st) {
    if (!timer_ok) {
        mn_error_detail = "the cycle counter does not advance";
        return MN_E_TIMER;
    }
    memset(st, 0, sizeof *st);
    for (uint32_t r = 0; r < count; ++r) {
        layers_sum = 0;
        profiling = 1;
        fn(arg);
        profiling = 0;
        mn_stats_add(st, layers_sum);
    }
    return MN_OK;
}

int main(void) {
    mn_uart_init();
    timer_ok = mn_timer_init();
    if (timer_ok) calibrate();
    mn_svc_reset_stats();
    mn_protocol_init(timer_ok);
    for (;;) mn_protocol_poll();
}
