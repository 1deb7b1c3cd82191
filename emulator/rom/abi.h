/* Numbers the ROM and the Node harness agree on (emulator/lib/rom-abi.js
 * mirrors them).  A `bkpt #n` inside the ROM is a call into the harness. */
#ifndef ROM_ABI_H
#define ROM_ABI_H

#define ROM_VERSION             3           /* byte at 0x13: B2-silicon ROM (V3 float/double tables) */
#define INITIAL_SP              0x20041f00  /* below the 256 bytes boot2 is copied to */
#define BOOT2_RAM               0x20041f00
#define BOOT2_SIZE              256
#define XIP_BASE                0x10000000

/* bkpt numbers */
#define BK_FLOAT_BASE           0x00        /* + table offset / 4: soft float table entry  */
#define BK_DOUBLE_BASE          0x20        /* + table offset / 4: soft double table entry */
#define BK_RESET_USB_BOOT       0x40        /* 'U','B' */
#define BK_WAIT_FOR_VECTOR      0x41        /* 'W','V' (core 1 is not emulated) */
#define BK_FLASH_WRITTEN        0x42        /* r0 = offset, r1 = count: flash changed (harness persists it) */
#define BK_LOOKUP_MISS          0xF0        /* r0 = table, r1 = code */
#define BK_NO_BOOT2             0xF1        /* r0 = crc found, r1 = crc expected */
#define BK_FAULT                0xF2        /* r0 = exception number */

#endif
