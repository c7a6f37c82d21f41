/* Arm CMSDK APB UART (UART0 of the QEMU mps2 machines), polled.
 * -DMN_UART_BASE=0x...  the UART's base address (board file qemu.uart_base)
 * -DMN_UART_CLOCK_HZ=n  its APB clock, for BAUDDIV (QEMU ignores the rate, but requires >= 16) */
#include "uart.h"

#ifndef MN_UART_BASE
#error "define MN_UART_BASE, the CMSDK UART base address"
#endif
#ifndef MN_UART_CLOCK_HZ
#define MN_UART_CLOCK_HZ 25000000u
#endif

#define UART_REG(off) (*(volatile uint32_t *)((uintptr_t)(MN_UART_BASE) + (off)))
#define UART_DATA UART_REG(0x00u)    /* write: byte to send; read: byte received */
#define UART_STATE UART_REG(0x04u)   /* bit0 TX buffer full, bit1 RX buffer full */
#define UART_CTRL UART_REG(0x08u)    /* bit0 TX enable, bit1 RX enable */
#define UART_BAUDDIV UART_REG(0x10u) /* clock divider, >= 16 */
#define STATE_TX_FULL (1u << 0)
#define STATE_RX_FULL (1u << 1)
#define CTRL_TX_EN (1u << 0)
#define CTRL_RX_EN (1u << 1)

void mn_uart_init(void) {
    UART_BAUDDIV = MN_UART_CLOCK_HZ / 115200u;
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN;
}

int mn_uart_rx_ready(void) { return (UART_STATE & STATE_RX_FULL) != 0; }

uint8_t mn_uart_rx(void) { return (uint8_t)UART_DATA; }

void mn_uart_tx(uint8_t byte) {
    while (UART_STATE & STATE_TX_FULL) {
    }
    UART_DATA = byte;
}
