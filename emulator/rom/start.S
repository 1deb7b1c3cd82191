/* Our own RP2040 boot ROM for rp2040js: header, tables and the harness stubs.
 *
 * Written from the RP2040 datasheet ("Bootrom" chapter) and the pico-sdk
 * headers (pico/bootrom.h, pico/bootrom/sf_table.h); it contains no bytes of
 * the Raspberry Pi ROM.  The C entries are in rom.c; every soft float/double
 * entry is a `bkpt #n; bx lr` stub implemented by the Node harness
 * (emulator/lib/fp.js), see emulator/README.md for the full list.
 */
#include "abi.h"

    .syntax unified
    .cpu cortex-m0plus
    .thumb

/* ---------------------------------------------------------------- header */
    .section .header, "ax"
    .global rom_header
rom_header:
    .word INITIAL_SP                 /* 0x00 initial SP                      */
    .word rom_reset                  /* 0x04 reset (Thumb bit from the linker) */
    .word rom_nmi                    /* 0x08 NMI                             */
    .word rom_hardfault              /* 0x0c HardFault                       */
    .byte 'M', 'u', 0x01             /* 0x10 magic                           */
    .byte ROM_VERSION                /* 0x13 version                         */
    .hword rom_func_table            /* 0x14 function table (16-bit pointer) */
    .hword rom_data_table            /* 0x16 data table                      */
    .hword rom_table_lookup + 1      /* 0x18 lookup routine, Thumb bit set   */
    .hword 0

/* ---------------------------------------------------------------- faults */
    .text
    .thumb_func
    .type rom_nmi, %function
rom_nmi:
    movs r0, #2
    bkpt #BK_FAULT
    b rom_nmi

    .thumb_func
    .type rom_hardfault, %function
rom_hardfault:
    movs r0, #3
    bkpt #BK_FAULT
    b rom_hardfault

/* ------------------------------------------------------- harness stubs */
.macro stub name, number
    .thumb_func
    .global \name
    .type \name, %function
\name:
    bkpt #\number
    bx lr
.endm

    .balign 4
    .global fplib_start
fplib_start:
/* soft float table entries: bkpt #(offset / 4) */
    stub fadd,          0x00
    stub fsub,          0x01
    stub fmul,          0x02
    stub fdiv,          0x03
    stub fcmp_fast,     0x04
    stub fcmp_fast_flags, 0x05
    stub fsqrt,         0x06
    stub float2int,     0x07
    stub float2fix,     0x08
    stub float2uint,    0x09
    stub float2ufix,    0x0a
    stub int2float,     0x0b
    stub fix2float,     0x0c
    stub uint2float,    0x0d
    stub ufix2float,    0x0e
    stub fcos,          0x0f
    stub fsin,          0x10
    stub ftan,          0x11
    stub fsincos,       0x12
    stub fexp,          0x13
    stub fln,           0x14
    stub fcmp,          0x15
    stub fatan2,        0x16
    stub int642float,   0x17
    stub fix642float,   0x18
    stub uint642float,  0x19
    stub ufix642float,  0x1a
    stub float2int64,   0x1b
    stub float2fix64,   0x1c
    stub float2uint64,  0x1d
    stub float2ufix64,  0x1e
    stub float2double,  0x1f
/* soft double table entries: bkpt #(0x20 + offset / 4) */
    stub dadd,          0x20
    stub dsub,          0x21
    stub dmul,          0x22
    stub ddiv,          0x23
    stub dcmp_fast,     0x24
    stub dcmp_fast_flags, 0x25
    stub dsqrt,         0x26
    stub double2int,    0x27
    stub double2fix,    0x28
    stub double2uint,   0x29
    stub double2ufix,   0x2a
    stub int2double,    0x2b
    stub fix2double,    0x2c
    stub uint2double,   0x2d
    stub ufix2double,   0x2e
    stub dcos,          0x2f
    stub dsin,          0x30
    stub dtan,          0x31
    stub dsincos,       0x32
    stub dexp,          0x33
    stub dln,           0x34
    stub dcmp,          0x35
    stub datan2,        0x36
    stub int642double,  0x37
    stub fix642double,  0x38
    stub uint642double, 0x39
    stub ufix642double, 0x3a
    stub double2int64,  0x3b
    stub double2fix64,  0x3c
    stub double2uint64, 0x3d
    stub double2ufix64, 0x3e
    stub double2float,  0x3f
    .global fplib_end
fplib_end:

/* function entries the harness implements */
    stub reset_to_usb_boot, BK_RESET_USB_BOOT
    stub wait_for_vector,   BK_WAIT_FOR_VECTOR

/* debug_trampoline: call the function in r7 with r0-r3 as arguments, then
 * stop at BKPT #0 (debug_trampoline_end) so a debugger regains control. */
    .thumb_func
    .global debug_trampoline
    .type debug_trampoline, %function
debug_trampoline:
    blx r7
    .thumb_func
    .global debug_trampoline_end
    .type debug_trampoline_end, %function
debug_trampoline_end:
    bkpt #0
    b debug_trampoline_end

/* ---------------------------------------------------------------- tables */
    .section .rodata.tables, "a"
    .balign 4
    .hword 0
soft_float_count:
    .byte 32, 0                      /* soft_float_table - 2: entry count in words ('F','Z') */
    .global soft_float_table
soft_float_table:
    .word fadd, fsub, fmul, fdiv, fcmp_fast, fcmp_fast_flags, fsqrt, float2int
    .word float2fix, float2uint, float2ufix, int2float, fix2float, uint2float, ufix2float, fcos
    .word fsin, ftan, fsincos, fexp, fln, fcmp, fatan2, int642float
    .word fix642float, uint642float, ufix642float, float2int64, float2fix64, float2uint64, float2ufix64, float2double

    .hword 0
    .byte 32, 0                      /* soft_double_table - 2: entry count in words */
    .global soft_double_table
soft_double_table:
    .word dadd, dsub, dmul, ddiv, dcmp_fast, dcmp_fast_flags, dsqrt, double2int
    .word double2fix, double2uint, double2ufix, int2double, fix2double, uint2double, ufix2double, dcos
    .word dsin, dtan, dsincos, dexp, dln, dcmp, datan2, int642double
    .word fix642double, uint642double, ufix642double, double2int64, double2fix64, double2uint64, double2ufix64, double2float

#define CODE(a, b) ((a) | ((b) << 8))
/* (code, 16-bit pointer) pairs ending in a zero code.  Function pointers carry
 * the Thumb bit (ABS16 relocations do not add it for us). */
    .balign 2
rom_func_table:
    .hword CODE('P','3'), popcount32 + 1
    .hword CODE('R','3'), reverse32 + 1
    .hword CODE('L','3'), clz32 + 1
    .hword CODE('T','3'), ctz32 + 1
    .hword CODE('M','S'), rom_memset + 1
    .hword CODE('S','4'), rom_memset4 + 1
    .hword CODE('M','C'), rom_memcpy + 1
    .hword CODE('C','4'), rom_memcpy44 + 1
    .hword CODE('I','F'), connect_internal_flash + 1
    .hword CODE('E','X'), flash_exit_xip + 1
    .hword CODE('R','E'), flash_range_erase + 1
    .hword CODE('R','P'), flash_range_program + 1
    .hword CODE('F','C'), flash_flush_cache + 1
    .hword CODE('C','X'), flash_enter_cmd_xip + 1
    .hword CODE('U','B'), reset_to_usb_boot + 1
    .hword CODE('D','T'), debug_trampoline + 1
    .hword CODE('D','E'), debug_trampoline_end + 1
    .hword CODE('W','V'), wait_for_vector + 1
    .hword 0, 0

rom_data_table:
    .hword CODE('C','R'), copyright_string
    .hword CODE('G','R'), git_revision
    .hword CODE('F','S'), fplib_start
    .hword CODE('S','F'), soft_float_table
    .hword CODE('F','E'), fplib_end
    .hword CODE('S','D'), soft_double_table
    .hword CODE('F','Z'), soft_float_count
    .hword 0, 0

    .balign 4
git_revision:
    .word ROM_GIT_REVISION           /* from the Makefile: our own source's revision */
copyright_string:
    .asciz "Own RP2040 boot ROM for rp2040js, written from the RP2040 datasheet; MIT"
