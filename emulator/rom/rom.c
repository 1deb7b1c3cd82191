/* Our own RP2040 boot ROM for rp2040js: the entries written as Thumb code.
 *
 * Each function follows its description in the RP2040 datasheet, "Bootrom"
 * chapter ("Bootrom Contents"); nothing here is derived from the Raspberry Pi
 * ROM's bytes.  Compiled with arm-none-eabi-gcc for Cortex-M0+, freestanding
 * (no libc, no libgcc: the loops must not turn into library calls).
 *
 * Emulator-specific (documented in emulator/README.md):
 *  - rp2040js maps the flash array at 0x10000000 for reads AND writes, and
 *    models neither the QSPI pads, the XIP cache nor the SSI flash protocol.
 *    So the flash erase/program entries write through the XIP window, and
 *    connect_internal_flash / flash_exit_xip / flash_flush_cache /
 *    flash_enter_cmd_xip have nothing to configure and return.
 *  - After an erase or program the ROM executes `bkpt #0x42` (r0 = offset,
 *    r1 = count) so the harness can write the changed range to its flash
 *    file at once: every completed flash operation survives a power cut.
 *  - The reset path reads boot2 through the XIP window instead of issuing
 *    03h serial reads through the SSI.
 */
#include <stdint.h>
#include "abi.h"

#define REG(addr) (*(volatile uint32_t *)(addr))
#define SIO_CPUID           0xd0000000u
#define WATCHDOG_SCRATCH(n) (0x4005800cu + 4u * (n))
#define PPB_VTOR            0xe000ed08u
#define WATCHDOG_BOOT_MAGIC 0xb007c0d3u

#define BKPT(n) __asm volatile ("bkpt #" #n ::: "memory")

static inline void bkpt2(uint32_t a, uint32_t b, int which) {
    register uint32_t r0 __asm("r0") = a;
    register uint32_t r1 __asm("r1") = b;
    if (which == BK_LOOKUP_MISS)
        __asm volatile ("bkpt #0xF0" :: "r"(r0), "r"(r1) : "memory");
    else if (which == BK_NO_BOOT2)
        __asm volatile ("bkpt #0xF1" :: "r"(r0), "r"(r1) : "memory");
    else
        __asm volatile ("bkpt #0x42" :: "r"(r0), "r"(r1) : "memory");
}

/* ------------------------------------------------------------- lookup */

/* rom_table_lookup(table, code): the tables are (code, 16-bit value) pairs
 * ending in a zero code.  Returns the value, or 0 when the code is absent;
 * an absent code first stops the emulator (bkpt, the harness names it). */
void *rom_table_lookup(const uint16_t *table, uint32_t code) {
    for (const uint16_t *e = table; e[0]; e += 2) {
        if (e[0] == code)
            return (void *)(uintptr_t)e[1];
    }
    bkpt2((uint32_t)(uintptr_t)table, code, BK_LOOKUP_MISS);
    return 0;
}

/* ------------------------------------------------------------ bit ops */

uint32_t popcount32(uint32_t v) {
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    v = (v + (v >> 4)) & 0x0f0f0f0fu;
    v = v + (v >> 8);
    v = v + (v >> 16);
    return v & 0x3fu;
}

uint32_t reverse32(uint32_t v) {
    v = ((v >> 1) & 0x55555555u) | ((v & 0x55555555u) << 1);
    v = ((v >> 2) & 0x33333333u) | ((v & 0x33333333u) << 2);
    v = ((v >> 4) & 0x0f0f0f0fu) | ((v & 0x0f0f0f0fu) << 4);
    v = ((v >> 8) & 0x00ff00ffu) | ((v & 0x00ff00ffu) << 8);
    return (v >> 16) | (v << 16);
}

/* Number of leading zero bits; 32 for 0. */
uint32_t clz32(uint32_t v) {
    uint32_t n = 0;
    if (!v) return 32;
    if (!(v & 0xffff0000u)) { n += 16; v <<= 16; }
    if (!(v & 0xff000000u)) { n += 8; v <<= 8; }
    if (!(v & 0xf0000000u)) { n += 4; v <<= 4; }
    if (!(v & 0xc0000000u)) { n += 2; v <<= 2; }
    if (!(v & 0x80000000u)) { n += 1; }
    return n;
}

/* Number of trailing zero bits; 32 for 0. */
uint32_t ctz32(uint32_t v) {
    uint32_t n = 0;
    if (!v) return 32;
    if (!(v & 0x0000ffffu)) { n += 16; v >>= 16; }
    if (!(v & 0x000000ffu)) { n += 8; v >>= 8; }
    if (!(v & 0x0000000fu)) { n += 4; v >>= 4; }
    if (!(v & 0x00000003u)) { n += 2; v >>= 2; }
    if (!(v & 0x00000001u)) { n += 1; }
    return n;
}

/* ------------------------------------------------------------ mem ops */

/* _memset(ptr, c, n): sets n bytes at ptr to c, returns ptr. */
uint8_t *rom_memset(uint8_t *ptr, uint8_t c, uint32_t n) {
    uint8_t *p = ptr;
    while (n && ((uintptr_t)p & 3)) { *p++ = c; n--; }
    if (n >= 4) {
        uint32_t w = c * 0x01010101u;
        uint32_t *q = (uint32_t *)p;
        while (n >= 16) { q[0] = w; q[1] = w; q[2] = w; q[3] = w; q += 4; n -= 16; }
        while (n >= 4) { *q++ = w; n -= 4; }
        p = (uint8_t *)q;
    }
    while (n--) *p++ = c;
    return ptr;
}

/* _memset4(ptr, c, n): as _memset, for a word-aligned ptr. */
uint32_t *rom_memset4(uint32_t *ptr, uint8_t c, uint32_t n) {
    return (uint32_t *)rom_memset((uint8_t *)ptr, c, n);
}

/* _memcpy(dest, src, n): copies n bytes, returns dest (overlap undefined). */
uint8_t *rom_memcpy(uint8_t *dest, const uint8_t *src, uint32_t n) {
    uint8_t *d = dest;
    if ((((uintptr_t)d ^ (uintptr_t)src) & 3) == 0) {
        while (n && ((uintptr_t)d & 3)) { *d++ = *src++; n--; }
        uint32_t *dw = (uint32_t *)d;
        const uint32_t *sw = (const uint32_t *)src;
        while (n >= 16) { dw[0] = sw[0]; dw[1] = sw[1]; dw[2] = sw[2]; dw[3] = sw[3]; dw += 4; sw += 4; n -= 16; }
        while (n >= 4) { *dw++ = *sw++; n -= 4; }
        d = (uint8_t *)dw;
        src = (const uint8_t *)sw;
    }
    while (n--) *d++ = *src++;
    return dest;
}

/* _memcpy44(dest, src, n): as _memcpy, for word-aligned dest and src. */
uint32_t *rom_memcpy44(uint32_t *dest, const uint32_t *src, uint32_t n) {
    return (uint32_t *)rom_memcpy((uint8_t *)dest, (const uint8_t *)src, n);
}

/* -------------------------------------------------------------- flash */

void connect_internal_flash(void) { }
void flash_exit_xip(void) { }
void flash_flush_cache(void) { }
void flash_enter_cmd_xip(void) { }

#define SECTOR 4096u

/* flash_range_erase(addr, count, block_size, block_cmd): erases count bytes
 * from offset addr (sector aligned, count a multiple of 4096; a partial
 * sector is erased whole, as the flash would).  The block arguments only
 * choose faster erase commands on real flash. */
void flash_range_erase(uint32_t addr, uint32_t count, uint32_t block_size, uint8_t block_cmd) {
    (void)block_size; (void)block_cmd;
    if (!count) return;
    uint32_t start = addr & ~(SECTOR - 1);
    uint32_t end = (addr + count + SECTOR - 1) & ~(SECTOR - 1);
    volatile uint32_t *p = (volatile uint32_t *)(XIP_BASE + start);
    for (uint32_t n = (end - start) / 4; n; n--)
        *p++ = 0xffffffffu;
    bkpt2(start, end - start, BK_FLASH_WRITTEN);
}

/* flash_range_program(addr, data, count): programs count bytes at offset
 * addr.  Programming NOR flash can only clear bits, so the new content is
 * old AND data. */
void flash_range_program(uint32_t addr, const uint8_t *data, uint32_t count) {
    uint32_t start = addr, total = count;
    volatile uint8_t *p = (volatile uint8_t *)(XIP_BASE + addr);
    if ((((uintptr_t)data | addr) & 3) == 0) {
        volatile uint32_t *pw = (volatile uint32_t *)p;
        const uint32_t *dw = (const uint32_t *)data;
        for (; count >= 4; count -= 4, pw++, dw++)
            *pw = *pw & *dw;
        p = (volatile uint8_t *)pw;
        data = (const uint8_t *)dw;
    }
    for (; count; count--, p++, data++)
        *p = *p & *data;
    bkpt2(start, total, BK_FLASH_WRITTEN);
}

/* -------------------------------------------------------------- reset */

/* CRC-32 as the boot2 checksum uses it: polynomial 0x04c11db7, initial value
 * 0xffffffff, MSB first, no final inversion. */
static uint32_t crc32_msb(const uint8_t *p, uint32_t n) {
    uint32_t crc = 0xffffffffu;
    while (n--) {
        crc ^= (uint32_t)*p++ << 24;
        for (int i = 0; i < 8; i++)
            crc = (crc & 0x80000000u) ? (crc << 1) ^ 0x04c11db7u : crc << 1;
    }
    return crc;
}

__attribute__((noreturn)) static void enter(uint32_t pc, uint32_t sp, uint32_t lr) {
    __asm volatile (
        "msr msp, %1\n"
        "mov lr, %2\n"
        "bx %0\n" :: "r"(pc | 1u), "r"(sp), "r"(lr));
    __builtin_unreachable();
}

/* Power-on / reset entry (the datasheet's processor-controlled boot):
 * core 1 waits to be launched; core 0 honours a watchdog boot vector, else
 * loads the 256-byte second stage (boot2) from flash into SRAM, checks its
 * CRC-32 and enters it with lr = 0, which boot2 takes as "called from the
 * ROM" and so vectors into the image at 0x10000100. */
__attribute__((noreturn)) void rom_reset(void) {
    if (REG(SIO_CPUID) != 0) {
        __asm volatile ("b wait_for_vector");
        __builtin_unreachable();
    }
    if (REG(WATCHDOG_SCRATCH(4)) == WATCHDOG_BOOT_MAGIC) {
        uint32_t pc = REG(WATCHDOG_SCRATCH(7));
        REG(WATCHDOG_SCRATCH(4)) = 0;
        if ((REG(WATCHDOG_SCRATCH(5)) ^ -WATCHDOG_BOOT_MAGIC) == pc)
            enter(pc, REG(WATCHDOG_SCRATCH(6)), 0);
    }
    const uint8_t *src = (const uint8_t *)XIP_BASE;
    uint8_t *dst = (uint8_t *)BOOT2_RAM;
    for (uint32_t i = 0; i < BOOT2_SIZE; i++)
        dst[i] = src[i];
    uint32_t want = dst[252] | dst[253] << 8 | dst[254] << 16 | (uint32_t)dst[255] << 24;
    uint32_t got = crc32_msb(dst, 252);
    if (got != want) {
        bkpt2(got, want, BK_NO_BOOT2);      /* the real chip would enter USB BOOTSEL mode */
        for (;;) ;
    }
    REG(PPB_VTOR) = 0;
    enter(BOOT2_RAM, INITIAL_SP, 0);
}
