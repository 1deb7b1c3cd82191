'use strict';
/* The numbers rom/abi.h and rom/start.S use; keep the three in step. */

// Soft float / soft double table entries, in table order (offset = 4 * index).
const FLOAT_ENTRIES = [
  'fadd', 'fsub', 'fmul', 'fdiv', 'fcmp_fast', 'fcmp_fast_flags', 'fsqrt', 'float2int',
  'float2fix', 'float2uint', 'float2ufix', 'int2float', 'fix2float', 'uint2float', 'ufix2float', 'fcos',
  'fsin', 'ftan', 'fsincos', 'fexp', 'fln', 'fcmp', 'fatan2', 'int642float',
  'fix642float', 'uint642float', 'ufix642float', 'float2int64', 'float2fix64', 'float2uint64', 'float2ufix64', 'float2double',
];
const DOUBLE_ENTRIES = [
  'dadd', 'dsub', 'dmul', 'ddiv', 'dcmp_fast', 'dcmp_fast_flags', 'dsqrt', 'double2int',
  'double2fix', 'double2uint', 'double2ufix', 'int2double', 'fix2double', 'uint2double', 'ufix2double', 'dcos',
  'dsin', 'dtan', 'dsincos', 'dexp', 'dln', 'dcmp', 'datan2', 'int642double',
  'fix642double', 'uint642double', 'ufix642double', 'double2int64', 'double2fix64', 'double2uint64', 'double2ufix64', 'double2float',
];

module.exports = {
  ROM_SIZE: 16 * 1024,
  BK_FLOAT_BASE: 0x00,
  BK_DOUBLE_BASE: 0x20,
  BK_RESET_USB_BOOT: 0x40,
  BK_WAIT_FOR_VECTOR: 0x41,
  BK_FLASH_WRITTEN: 0x42,
  BK_LOOKUP_MISS: 0xf0,
  BK_NO_BOOT2: 0xf1,
  BK_FAULT: 0xf2,
  FLOAT_ENTRIES,
  DOUBLE_ENTRIES,
  code: (s) => s.charCodeAt(0) | (s.charCodeAt(1) << 8),
  codeName: (c) => String.fromCharCode(c & 0xff, (c >> 8) & 0xff),
};
