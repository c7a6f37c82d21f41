/* The serial link to the host: polled, 8N1, no interrupts, no FIFOs beyond the hardware's.
 * uart_cmsdk.c (QEMU mps2 machines) or uart_stm32.c (Nucleo boards) implements it. */
#ifndef MN_UART_H_
#define MN_UART_H_

#include <stdint.h>

void mn_uart_init(void);
int mn_uart_rx_ready(void);     /* a received byte is waiting */
uint8_t mn_uart_rx(void);       /* the waiting byte (call after mn_uart_rx_ready() != 0) */
void mn_uart_tx(uint8_t byte);  /* blocks while the transmitter is full */

#endif /* MN_UART_H_ */
