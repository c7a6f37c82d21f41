/*
 * Reset and exception vectors, and the C run-time start: copy .data from flash to RAM, zero
 * .bss, point VTOR at our table, call main(). No FPU set-up: the runtime is integer-only and the
 * firmware is built for the soft-float ABI. Only the 16 system vectors exist: no peripheral
 * interrupt is enabled.
 */
#include <stdint.h>

/* symbols from link.ld */
extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[];
extern uint32_t _stack_top[];

int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void);
void NMI_Handler(void) __attribute__((weak, alias("Default_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("Default_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SecureFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));

typedef void (*vector_t)(void);

/* The core (and QEMU) loads SP from word 0 and PC from word 1 at reset. */
__attribute__((section(".vectors"), used)) const vector_t mn_vectors[16] = {
    (vector_t)(uintptr_t)_stack_top, /* initial main stack pointer */
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    SecureFault_Handler, /* ARMv8-M only; reserved on ARMv7-M */
    0,
    0,
    0,
    SVC_Handler,
    DebugMon_Handler,
    0,
    PendSV_Handler,
    SysTick_Handler,
};

#define SCB_VTOR (*(volatile uint32_t *)0xE000ED08u) /* vector table offset register */

void Reset_Handler(void) {
    const uint32_t *src = _sidata;
    for (uint32_t *dst = _sdata; dst < _edata;) *dst++ = *src++;
    for (uint32_t *dst = _sbss; dst < _ebss;) *dst++ = 0;
    SCB_VTOR = (uint32_t)(uintptr_t)mn_vectors;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    main();
    for (;;) {
    }
}

/* A fault sends nothing (the UART state is unknown) and stops: the host times out. */
void HardFault_Handler(void) {
    for (;;) {
    }
}

void Default_Handler(void) {
    for (;;) {
    }
}
