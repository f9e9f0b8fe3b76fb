/*
 * A kernel for the Cortex-M3 board mps2-an385 (QEMU) that uses
 * libstratalloc_embedded.a as its heap: its own vector table and start-up,
 * output and exit status through Arm semihosting, and the heap handed over
 * from the linker script's symbols. It runs heap_test.c.
 *
 *   qemu-system-arm -M mps2-an385 -nographic \
 *       -semihosting-config enable=on,target=native -kernel kernel.elf
 *
 * Exit status: 0 all passed; 1 a check failed; 3 a CPU fault (the default
 * error handler's halt is one: built with -DDEFAULT_HANDLER, the test ends
 * there on purpose).
 */
#include <stddef.h>
#include <stdint.h>

#include "../heap_test.h"
#include "stratalloc_embedded.h"

/* ---- semihosting: BKPT 0xAB, operation in r0, argument in r1 */

#define SYS_WRITE0 0x04
#define SYS_EXIT_EXTENDED 0x20
#define ADP_STOPPED_APPLICATION_EXIT 0x20026

static uintptr_t semihost(uintptr_t op, const void *arg) {
    register uintptr_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void platform_write(const char *buf, size_t len) {
    char chunk[128];
    while (len) {
        size_t n = len < sizeof chunk - 1 ? len : sizeof chunk - 1;
        for (size_t i = 0; i < n; i++) chunk[i] = buf[i];
        chunk[n] = 0;
        semihost(SYS_WRITE0, chunk);
        buf += n;
        len -= n;
    }
}

void platform_exit(int status) {
    uintptr_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uintptr_t)status};
    semihost(SYS_EXIT_EXTENDED, block);
    for (;;) __asm__ volatile("wfi");
}

/* ---- start-up */

extern char __data_start[], __data_end[], __data_load[], __bss_start[], __bss_end[];
extern char __heap_start[], __heap_end[], __stack_top[];

int main(void);

void reset_handler(void) {
    for (char *d = __data_start, *s = __data_load; d < __data_end;) *d++ = *s++;
    for (char *b = __bss_start; b < __bss_end;) *b++ = 0;
    platform_exit(main());
}

static void put_hex32(uint32_t v) {
    char b[11] = "0x";
    for (int i = 0; i < 8; i++) b[2 + i] = "0123456789abcdef"[(v >> (28 - 4 * i)) & 15];
    b[10] = 0;
    put(b);
}

/* Every fault ends the run: name it and exit 3. */
static void fault_handler(void) {
    volatile uint32_t *cfsr = (uint32_t *)0xE000ED28, *hfsr = (uint32_t *)0xE000ED2C;
    put("kernel: hard fault, CFSR ");
    put_hex32(*cfsr);
    put(", HFSR ");
    put_hex32(*hfsr);
    if (*cfsr & (1u << 16)) put(" (undefined instruction)");
    put("\n");
    platform_exit(3);
}

/* The vector table: initial stack pointer, reset, then the exceptions. */
__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))__stack_top,
    reset_handler,
    fault_handler, /* NMI */
    fault_handler, /* HardFault */
    fault_handler, /* MemManage */
    fault_handler, /* BusFault */
    fault_handler, /* UsageFault */
    0, 0, 0, 0,
    fault_handler, /* SVCall */
    fault_handler, /* DebugMonitor */
    0,
    fault_handler, /* PendSV */
    fault_handler, /* SysTick */
};

/* ---- the kernel */

/* Interrupts off around each heap call, as a kernel whose interrupt
 * handlers allocate would set it up. */
static unsigned lock_calls;
static uintptr_t irq_save(void *ctx) {
    uintptr_t primask;
    __asm__ volatile("mrs %0, primask\n cpsid i" : "=r"(primask)::"memory");
    ++*(unsigned *)ctx;
    return primask;
}
static void irq_restore(void *ctx, uintptr_t primask) {
    (void)ctx;
    __asm__ volatile("msr primask, %0" ::"r"(primask) : "memory");
}

int main(void) {
    size_t size = (size_t)(__heap_end - __heap_start);
    put("kernel: Cortex-M3, heap from the linker script\n");
    if (heap_set_lock_hooks(irq_save, irq_restore, &lock_calls) != 0) return 1;
    int failures = heap_test_run(__heap_start, size);
    if (lock_calls == 0) {
        put("FAIL: the lock hooks were never called\n");
        failures++;
    }
    if (failures) return 1;
#ifdef DEFAULT_HANDLER
    heap_test_fatal(__heap_start, size, 0);
#else
    heap_test_fatal(__heap_start, size, 1);
#endif
}
