/*
 * The ST-LINK virtual COM port U(S)ART of the Nucleo boards, register level (no HAL), polled,
 * 115200 8N1. Select the chip with one of:
 *
 *   -DMN_STM32F4  NUCLEO-F446RE:   USART2  on PA2 (TX) / PA3 (RX), AF7 (ST UM1724)
 *   -DMN_STM32L5  NUCLEO-L552ZE-Q: LPUART1 on PG7 (TX) / PG8 (RX), AF8 (ST UM2581)
 *   -DMN_STM32H7  NUCLEO-H743ZI:   USART3  on PD8 (TX) / PD9 (RX), AF7 (ST UM2407)
 *
 * The firmware runs at the RESET clock: there is no PLL set-up. The baud-rate divisors below are
 * for that clock (STM32F446: HSI 16 MHz, STM32L552: MSI 4 MHz, STM32H743: HSI 64 MHz, every bus
 * prescaler at /1 after reset), and MN_CLOCK_HZ (HELLO clock_hz) is the same figure.
 * Register addresses and bits: ST RM0390 (F446), RM0438 (L552, TrustZone disabled: non-secure
 * aliases), RM0433 (H743).
 */
#include "uart.h"

#define REG32(addr) (*(volatile uint32_t *)(addr))
#define BAUD 115200u

/* GPIO port registers (the same layout on all three families) */
#define GPIO_MODER(port) REG32((port) + 0x00u) /* 2 bits per pin: 00 in, 01 out, 10 alternate, 11 analog */
#define GPIO_PUPDR(port) REG32((port) + 0x0Cu) /* 2 bits per pin: 01 pull-up */
#define GPIO_AFRL(port) REG32((port) + 0x20u)  /* 4 bits per pin, pins 0..7: alternate function number */
#define GPIO_AFRH(port) REG32((port) + 0x24u)  /* 4 bits per pin, pins 8..15 */

/* Put `pin` of `port` in alternate function `af` (with a pull-up, which keeps an idle RX high). */
static void gpio_af(uint32_t port, unsigned pin, unsigned af) {
    GPIO_MODER(port) = (GPIO_MODER(port) & ~(3u << (2 * pin))) | (2u << (2 * pin));
    GPIO_PUPDR(port) = (GPIO_PUPDR(port) & ~(3u << (2 * pin))) | (1u << (2 * pin));
    if (pin < 8) {
        GPIO_AFRL(port) = (GPIO_AFRL(port) & ~(15u << (4 * pin))) | ((uint32_t)af << (4 * pin));
    } else {
        GPIO_AFRH(port) = (GPIO_AFRH(port) & ~(15u << (4 * (pin - 8)))) | ((uint32_t)af << (4 * (pin - 8)));
    }
}

#if defined(MN_STM32F4)

#define RCC 0x40023800u
#define RCC_AHB1ENR REG32(RCC + 0x30u) /* bit0 GPIOAEN */
#define RCC_APB1ENR REG32(RCC + 0x40u) /* bit17 USART2EN */
#define GPIOA 0x40020000u
#define USART2 0x40004400u
/* USART (F4 "v1" register set) */
#define USART_SR REG32(USART2 + 0x00u)  /* status: bit5 RXNE, bit7 TXE */
#define USART_DR REG32(USART2 + 0x04u)  /* data (reading it after SR also clears an overrun) */
#define USART_BRR REG32(USART2 + 0x08u) /* baud rate: mantissa.fraction/16 = f_pclk1 / (16 * baud) */
#define USART_CR1 REG32(USART2 + 0x0Cu) /* bit13 UE, bit3 TE, bit2 RE; M=0 (8 bits), no parity */
#define PCLK1_HZ 16000000u              /* HSI, APB1 prescaler /1 after reset */

void mn_uart_init(void) {
    RCC_AHB1ENR |= 1u << 0;
    RCC_APB1ENR |= 1u << 17;
    (void)RCC_APB1ENR; /* read back: the clock is on before the peripheral is touched */
    gpio_af(GPIOA, 2, 7);
    gpio_af(GPIOA, 3, 7);
    USART_CR1 = 0;
    USART_BRR = (PCLK1_HZ + BAUD / 2) / BAUD; /* 139 = 0x8B: mantissa 8, fraction 11/16 */
    USART_CR1 = (1u << 13) | (1u << 3) | (1u << 2);
}

int mn_uart_rx_ready(void) { return (USART_SR & (1u << 5)) != 0; }
uint8_t mn_uart_rx(void) { return (uint8_t)USART_DR; }
void mn_uart_tx(uint8_t byte) {
    while (!(USART_SR & (1u << 7))) {
    }
    USART_DR = byte;
}

#elif defined(MN_STM32L5) || defined(MN_STM32H7)

#if defined(MN_STM32L5)
#define RCC 0x40021000u
#define PWR_CR2 REG32(0x40007000u + 0x04u) /* bit9 IOSV: VDDIO2 valid (PG2..PG15 are on VDDIO2) */
#define GPIOG 0x42021800u
#define UART 0x40008000u /* LPUART1 */
#define UART_KER_HZ 4000000u /* PCLK1 = MSI 4 MHz after reset (RCC_CCIPR1 LPUART1SEL = 00: PCLK1) */
/* LPUART: BRR = 256 * f_ker / baud (RM0438 LPUART baud rate generation), must be >= 0x300 */
#define UART_BRR_VALUE ((256u * UART_KER_HZ + BAUD / 2) / BAUD) /* 8889 */

static void clocks_and_pins(void) {
    REG32(RCC + 0x58u) |= 1u << 28; /* RCC_APB1ENR1 bit28 PWREN */
    (void)REG32(RCC + 0x58u);
    PWR_CR2 |= 1u << 9;             /* IOSV: without it port G pins 2..15 are unpowered */
    REG32(RCC + 0x4Cu) |= 1u << 6;  /* RCC_AHB2ENR bit6 GPIOGEN */
    REG32(RCC + 0x5Cu) |= 1u << 0;  /* RCC_APB1ENR2 bit0 LPUART1EN */
    (void)REG32(RCC + 0x5Cu);
    gpio_af(GPIOG, 7, 8);
    gpio_af(GPIOG, 8, 8);
}
#else /* MN_STM32H7 */
#define RCC 0x58024400u
#define GPIOD 0x58020C00u
#define UART 0x40004800u /* USART3 */
#define UART_KER_HZ 64000000u /* rcc_pclk1 = HSI 64 MHz after reset (D2CCIP2R USART234578SEL = 000) */
#define UART_BRR_VALUE ((UART_KER_HZ + BAUD / 2) / BAUD) /* oversampling by 16: 556 */

static void clocks_and_pins(void) {
    REG32(RCC + 0xE0u) |= 1u << 3;  /* RCC_AHB4ENR bit3 GPIODEN */
    REG32(RCC + 0xE8u) |= 1u << 18; /* RCC_APB1LENR bit18 USART3EN */
    (void)REG32(RCC + 0xE8u);
    gpio_af(GPIOD, 8, 7);
    gpio_af(GPIOD, 9, 7);
}
#endif

/* USART / LPUART ("v2" register set of the L5 and H7) */
#define UART_CR1 REG32(UART + 0x00u) /* bit0 UE, bit2 RE, bit3 TE; M0/M1 = 0 (8 bits), no parity */
#define UART_CR3 REG32(UART + 0x08u) /* bit12 OVRDIS: an overrun overwrites RDR instead of blocking */
#define UART_BRR REG32(UART + 0x0Cu) /* baud rate divisor */
#define UART_ISR REG32(UART + 0x1Cu) /* bit5 RXNE (RXFNE), bit7 TXE (TXFNF) */
#define UART_RDR REG32(UART + 0x24u) /* received byte */
#define UART_TDR REG32(UART + 0x28u) /* byte to send */

void mn_uart_init(void) {
    clocks_and_pins();
    UART_CR1 = 0; /* BRR and CR3 are written with UE = 0 */
    UART_CR3 = 1u << 12;
    UART_BRR = UART_BRR_VALUE;
    UART_CR1 = (1u << 0) | (1u << 2) | (1u << 3);
}

int mn_uart_rx_ready(void) { return (UART_ISR & (1u << 5)) != 0; }
uint8_t mn_uart_rx(void) { return (uint8_t)UART_RDR; }
void mn_uart_tx(uint8_t byte) {
    while (!(UART_ISR & (1u << 7))) {
    }
    UART_TDR = byte;
}

#else
#error "define MN_STM32F4, MN_STM32L5 or MN_STM32H7"
#endif
