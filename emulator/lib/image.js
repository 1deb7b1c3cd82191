'use strict';
/* Firmware images -> list of {offset, data} writes into flash (offset from 0x10000000). */
const fs = require('fs');

const XIP_BASE = 0x10000000;
const FLASH_LIMIT = 16 * 1024 * 1024;
const UF2_MAGIC0 = 0x0a324655, UF2_MAGIC1 = 0x9e5d5157, UF2_MAGIC_END = 0x0ab16f30;
const UF2_FLAG_NOT_MAIN_FLASH = 0x1, UF2_FLAG_FAMILY = 0x2000;
const RP2040_FAMILY = 0xe48bff56;

function parseUf2(buf) {
  const writes = [];
  for (let off = 0; off + 512 <= buf.length; off += 512) {
    const w = (i) => buf.readUInt32LE(off + i);
    if (w(0) !== UF2_MAGIC0 || w(4) !== UF2_MAGIC1 || w(508) !== UF2_MAGIC_END) {
      throw new Error(`UF2 block ${off / 512} has bad magic`);
    }
    const flags = w(8), addr = w(12), size = w(16), family = w(28);
    if (flags & UF2_FLAG_NOT_MAIN_FLASH) continue;
    if ((flags & UF2_FLAG_FAMILY) && family !== RP2040_FAMILY) {
      throw new Error(`UF2 block ${off / 512} is for family 0x${family.toString(16)}, not RP2040`);
    }
    if (addr < XIP_BASE || addr + size > XIP_BASE + FLASH_LIMIT) {
      throw new Error(`UF2 block ${off / 512} targets 0x${addr.toString(16)}, outside flash`);
    }
    writes.push({ offset: addr - XIP_BASE, data: buf.subarray(off + 32, off + 32 + size) });
  }
  if (!writes.length) throw new Error('UF2 file holds no flash blocks');
  return writes;
}

function parseElf(buf) {
  if (buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 1 || buf[5] !== 1) {
    throw new Error('not a 32-bit little-endian ELF file');
  }
  const phoff = buf.readUInt32LE(28), phentsize = buf.readUInt16LE(42), phnum = buf.readUInt16LE(44);
  const writes = [];
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    const type = buf.readUInt32LE(p), offset = buf.readUInt32LE(p + 4);
    const paddr = buf.readUInt32LE(p + 12), filesz = buf.readUInt32LE(p + 16);
    if (type !== 1 || !filesz) continue;                 // PT_LOAD with file content
    if (paddr < XIP_BASE || paddr >= XIP_BASE + FLASH_LIMIT) continue;   // RAM-only segment
    writes.push({ offset: paddr - XIP_BASE, data: buf.subarray(offset, offset + filesz) });
  }
  if (!writes.length) throw new Error('ELF file has no segment loaded into flash');
  return writes;
}

/** Read a .uf2, .elf or .bin (raw, placed at 0x10000000) image. */
function loadImage(path) {
  const buf = fs.readFileSync(path);
  if (buf.length >= 512 && buf.readUInt32LE(0) === UF2_MAGIC0) return parseUf2(buf);
  if (buf.length >= 52 && buf.readUInt32BE(0) === 0x7f454c46) return parseElf(buf);
  if (path.endsWith('.uf2') || path.endsWith('.elf')) throw new Error(`${path}: not a valid ${path.slice(-3)} file`);
  return [{ offset: 0, data: buf }];
}

module.exports = { loadImage, parseUf2, parseElf, XIP_BASE };
