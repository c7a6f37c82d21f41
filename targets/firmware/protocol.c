/*
 * Framing and request dispatch of the micronas serial protocol, device side (docs/protocol.md).
 *
 * Receive: hunt for SYNC; read LEN and reject LEN > MN_MAX_PAYLOAD at once (then hunt again from
 * the byte after that SYNC, so a real frame behind a false SYNC is still found); read SEQ, TYPE,
 * the payload and the CRC. A bad CRC after a valid header is answered with ERROR BAD_CRC (same
 * SEQ). Bytes between frames are ignored. On real boards (MN_RX_TIMEOUT_TICKS > 0) a frame
 * whose bytes stop arriving for that long is abandoned, so a lost byte cannot swallow the next
 * request; under QEMU the TCP link loses nothing and there is no timeout.
 */
#include "protocol.h"

#include <string.h>

#include "micronas_model.h"
#include "timer.h"
#include "uart.h"

#ifndef MN_BOARD_NAME
#error "define MN_BOARD_NAME, e.g. -DMN_BOARD_NAME=\"nucleo-f446re\""
#endif
#ifndef MN_CORE_NAME
#error "define MN_CORE_NAME, e.g. -DMN_CORE_NAME=\"cortex-m4\""
#endif
#ifndef MN_CLOCK_HZ
#error "define MN_CLOCK_HZ, the core clock the firmware runs at"
#endif
#ifndef MN_RX_TIMEOUT_TICKS
#define MN_RX_TIMEOUT_TICKS 0
#endif

const char *mn_error_detail;

static uint8_t rx[MN_MAX_PAYLOAD];
static uint8_t tx[MN_MAX_PAYLOAD];

/* ---- CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, xorout 0 ---------------- */

static uint16_t crc16_byte(uint16_t crc, uint8_t b) {
    crc ^= (uint16_t)(b << 8);
    for (int i = 0; i < 8; ++i) crc = (uint16_t)((crc & 0x8000u) ? ((unsigned)crc << 1) ^ 0x1021u : (unsigned)crc << 1);
    return crc;
}

static uint16_t crc16(uint16_t crc, const uint8_t *p, uint32_t n) {
    while (n--) crc = crc16_byte(crc, *p++);
    return crc;
}

/* ---- byte input with a two-byte push-back (to rescan a rejected LEN) ---------------------- */

static uint8_t pushed[2];
static int npushed;

static int timer_ok_for_timeout; /* the receive timeout needs a running timer */

/* The next byte, or -1 when `in_frame` and nothing arrived for MN_RX_TIMEOUT_TICKS. */
static int get_byte(int in_frame) {
    if (npushed > 0) {
        uint8_t b = pushed[0];
        pushed[0] = pushed[1];
        npushed--;
        return b;
    }
#if MN_RX_TIMEOUT_TICKS > 0
    if (in_frame && timer_ok_for_timeout) {
        uint64_t t0 = mn_timer_now();
        while (!mn_uart_rx_ready()) {
            if (mn_timer_now() - t0 > (uint64_t)(MN_RX_TIMEOUT_TICKS)) return -1;
        }
        return mn_uart_rx();
    }
#else
    (void)in_frame;
#endif
    while (!mn_uart_rx_ready()) {
    }
    return mn_uart_rx();
}

/* ---- replies ------------------------------------------------------------------------------- */

static void send_frame(uint8_t seq, uint8_t type, const uint8_t *payload, uint16_t len) {
    uint8_t head[4];
    head[0] = (uint8_t)len;
    head[1] = (uint8_t)(len >> 8);
    head[2] = seq;
    head[3] = type;
    uint16_t crc = crc16(crc16(0xFFFFu, head, 4), payload, len);
    mn_uart_tx(MN_SYNC);
    for (int i = 0; i < 4; ++i) mn_uart_tx(head[i]);
    for (uint16_t i = 0; i < len; ++i) mn_uart_tx(payload[i]);
    mn_uart_tx((uint8_t)crc);
    mn_uart_tx((uint8_t)(crc >> 8));
}

static const char *const generic_detail[] = {
    "", "bad CRC", "bad payload length", "unknown request type", "out of range", "unsupported", "timer stopped",
};

static void send_error(uint8_t seq, uint8_t code, const char *detail) {
    if (detail == 0 || detail[0] == '\0') detail = code < 7 ? generic_detail[code] : "";
    size_t n = strlen(detail);
    if (n > 200) n = 200;
    uint8_t buf[2 + 200];
    buf[0] = code;
    buf[1] = (uint8_t)n;
    memcpy(buf + 2, detail, n);
    send_frame(seq, MN_T_ERROR, buf, (uint16_t)(2 + n));
}

/* ---- requests ------------------------------------------------------------------------------ */

#define FAIL(code, text)             \
    do {                             \
        mn_error_detail = (text);    \
        return (code);               \
    } while (0)

static uint16_t put_stats(uint8_t *p, const mn_stats *st) {
    uint8_t *q = mn_wr16(p, st->count);
    q = mn_wr32(q, st->min_ticks);
    q = mn_wr32(q, st->max_ticks);
    q = mn_wr32(q, (uint32_t)st->sum_ticks);
    q = mn_wr32(q, (uint32_t)(st->sum_ticks >> 32));
    return (uint16_t)(q - p);
}

static uint16_t put_name(uint8_t *p, const char *s) {
    size_t n = strlen(s);
    if (n > 64) n = 64;
    p[0] = (uint8_t)n;
    memcpy(p + 1, s, n);
    return (uint16_t)(1 + n);
}

/* Execute one request; returns MN_OK with the reply payload in tx[0..*out_len), or an ERROR code. */
static int dispatch(uint8_t type, const uint8_t *p, uint16_t len, uint16_t *out_len) {
    *out_len = 0;
    switch (type) {
    case MN_T_HELLO: {
        if (len != 0) FAIL(MN_E_BAD_LENGTH, "HELLO takes no payload");
        uint8_t *q = tx;
        *q++ = MN_PROTOCOL_VERSION;
        *q++ = MN_TIMER_KIND;
        q = mn_wr32(q, (uint32_t)(MN_CLOCK_HZ));
        q = mn_wr32(q, (uint32_t)(MN_TIMER_HZ));
        q = mn_wr32(q, (uint32_t)MICRONAS_ARENA_BYTES);
        q = mn_wr16(q, (uint16_t)MN_MAX_PAYLOAD);
        q = mn_wr16(q, (uint16_t)MICRONAS_NUM_LAYERS);
        q = mn_wr32(q, (uint32_t)MICRONAS_INPUT_BYTES);
        q = mn_wr32(q, (uint32_t)MICRONAS_OUTPUT_BYTES);
        q += put_name(q, MN_BOARD_NAME);
        q += put_name(q, MN_CORE_NAME);
        *out_len = (uint16_t)(q - tx);
        return MN_OK;
    }
    case MN_T_SET_INPUT: {
        if (len < 4) FAIL(MN_E_BAD_LENGTH, "SET_INPUT needs u32 offset, bytes");
        uint32_t off = mn_rd32(p), n = (uint32_t)len - 4u;
        if (off > MICRONAS_INPUT_BYTES || n > MICRONAS_INPUT_BYTES - off)
            FAIL(MN_E_OUT_OF_RANGE, "offset + bytes exceed the model input");
        memcpy(mn_input + off, p + 4, n);
        return MN_OK;
    }
    case MN_T_INVOKE: {
        if (len != 3) FAIL(MN_E_BAD_LENGTH, "INVOKE takes u16 count, u8 mode");
        uint16_t count = mn_rd16(p);
        uint8_t mode = p[2];
        if (count == 0) FAIL(MN_E_OUT_OF_RANGE, "count must be >= 1");
        if (mode > 1) FAIL(MN_E_OUT_OF_RANGE, "mode must be 0 (whole model) or 1 (per layer)");
        mn_stats st;
        int rc = mn_svc_invoke(count, mode, &st);
        if (rc != MN_OK) return rc;
        *out_len = put_stats(tx, &st);
        return MN_OK;
    }
    case MN_T_GET_OUTPUT: {
        if (len != 6) FAIL(MN_E_BAD_LENGTH, "GET_OUTPUT takes u32 offset, u16 length");
        uint32_t off = mn_rd32(p), n = mn_rd16(p + 4);
        if (n > MN_MAX_PAYLOAD) FAIL(MN_E_OUT_OF_RANGE, "length exceeds max_payload");
        if (off > MICRONAS_OUTPUT_BYTES || n > MICRONAS_OUTPUT_BYTES - off)
            FAIL(MN_E_OUT_OF_RANGE, "offset + length exceed the model output");
        memcpy(tx, mn_output + off, n);
        *out_len = (uint16_t)n;
        return MN_OK;
    }
    case MN_T_GET_LAYERS: {
        if (len != 4) FAIL(MN_E_BAD_LENGTH, "GET_LAYERS takes u16 first, u16 count");
        uint32_t first = mn_rd16(p), n = mn_rd16(p + 2);
        if (first > MICRONAS_NUM_LAYERS || n > MICRONAS_NUM_LAYERS - first)
            FAIL(MN_E_OUT_OF_RANGE, "first + count exceed num_layers");
        if (4u * n > MN_MAX_PAYLOAD) FAIL(MN_E_OUT_OF_RANGE, "count x 4 exceeds max_payload");
        for (uint32_t i = 0; i < n; ++i) mn_wr32(tx + 4 * i, mn_layer_ticks[first + i]);
        *out_len = (uint16_t)(4u * n);
        return MN_OK;
    }
    case MN_T_GET_MEMORY: {
        if (len != 0) FAIL(MN_E_BAD_LENGTH, "GET_MEMORY takes no payload");
        uint32_t m[4];
        mn_svc_memory(m);
        for (int i = 0; i < 4; ++i) mn_wr32(tx + 4 * i, m[i]);
        *out_len = 16;
        return MN_OK;
    }
    case MN_T_BENCH_OP: {
        if (len < 3) FAIL(MN_E_BAD_LENGTH, "BENCH_OP needs u8 kernel, u16 count, params");
        uint16_t count = mn_rd16(p + 1);
        if (count == 0) FAIL(MN_E_OUT_OF_RANGE, "count must be >= 1");
        mn_stats st;
        int rc = mn_svc_bench(p[0], count, p + 3, (uint16_t)(len - 3), &st);
        if (rc != MN_OK) return rc;
        *out_len = put_stats(tx, &st);
        return MN_OK;
    }
    case MN_T_RESET_STATS:
        if (len != 0) FAIL(MN_E_BAD_LENGTH, "RESET_STATS takes no payload");
        mn_svc_reset_stats();
        return MN_OK;
    default:
        FAIL(MN_E_UNKNOWN_TYPE, "unknown request type");
    }
}

void mn_stats_add(mn_stats *st, uint64_t ticks) {
    uint32_t t = ticks > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)ticks;
    if (st->count == 0 || t < st->min_ticks) st->min_ticks = t;
    if (st->count == 0 || t > st->max_ticks) st->max_ticks = t;
    st->sum_ticks += ticks;
    st->count++;
}

void mn_protocol_init(int timer_ok) { timer_ok_for_timeout = timer_ok; }

void mn_protocol_poll(void) {
    for (;;) {
        int b = get_byte(0);
        if (b != MN_SYNC) continue; /* hunting: bytes between frames are ignored */
        int lo = get_byte(1);
        if (lo < 0) continue;
        int hi = get_byte(1);
        if (hi < 0) continue;
        uint16_t len = (uint16_t)(lo | (hi << 8));
        if (len > MN_MAX_PAYLOAD) { /* not a frame for us: rescan the two LEN bytes */
            pushed[npushed++] = (uint8_t)lo;
            pushed[npushed++] = (uint8_t)hi;
            continue;
        }
        int seq = get_byte(1);
        if (seq < 0) continue;
        int type = get_byte(1);
        if (type < 0) continue;
        int ok = 1;
        for (uint16_t i = 0; i < len && ok; ++i) {
            int c = get_byte(1);
            if (c < 0) ok = 0;
            rx[i] = (uint8_t)c;
        }
        int c0 = ok ? get_byte(1) : -1;
        int c1 = c0 >= 0 ? get_byte(1) : -1;
        if (c1 < 0) continue; /* timed out inside the frame */
        uint8_t head[4] = {(uint8_t)lo, (uint8_t)hi, (uint8_t)seq, (uint8_t)type};
        uint16_t crc = crc16(crc16(0xFFFFu, head, 4), rx, len);
        if (crc != (uint16_t)(c0 | (c1 << 8))) {
            send_error((uint8_t)seq, MN_E_BAD_CRC, "");
            return;
        }
        uint16_t out_len;
        mn_error_detail = 0;
        int rc = dispatch((uint8_t)type, rx, len, &out_len);
        if (rc == MN_OK) {
            send_frame((uint8_t)seq, (uint8_t)(type | 0x80), tx, out_len);
        } else {
            send_error((uint8_t)seq, (uint8_t)rc, mn_error_detail);
        }
        return;
    }
}
