#!/usr/bin/env node
'use strict';
/*
 * Call entries of the boot ROM directly on the emulated CPU (no firmware):
 * the test driver of tests/test_rom*.py.  Reads one JSON request from stdin:
 *   {"rom": path, "calls": [{"entry": "fadd" | "MC" | "lookup" | "0x1234",
 *      "args": [u32...], "write": [[addr, "hex"]...], "read": [[addr, len]...],
 *      "flash_read": [[offset, len]...], "r7": entry}...], "flash": "hex of a flash prefix"}
 * Writes {"results": [{"r": [r0..r3], "N","Z","C","V", "read": ["hex"...],
 *   "flash_read": [...], "instructions": n} | {"error": "..."}]}.
 * Entries: a two-letter function table code, a soft float/double table name,
 * "lookup" (the routine at 0x18) or an absolute address.  Each call resolves
 * its entry through the ROM's own tables (0x14/0x16/0x18 and 'SF'/'SD').
 */
const fs = require('fs');
const { Board } = require('./lib/board');
const abi = require('./lib/rom-abi');

const req = JSON.parse(fs.readFileSync(0, 'utf8'));
const board = new Board({ rom: fs.readFileSync(req.rom), realtime: false });
const mcu = board.mcu;
if (req.flash) mcu.flash.set(Buffer.from(req.flash, 'hex'));

const half = (a) => mcu.readUint16(a);
const lookupFn = half(0x18);
function lookup(table, code) {
  const out = board.call(lookupFn, [table, code]);
  return out.r[0];
}
const cache = {};
function resolve(entry) {
  if (entry in cache) return cache[entry];
  let addr;
  if (entry === 'lookup') addr = lookupFn;
  else if (/^0x[0-9a-f]+$/i.test(entry)) addr = parseInt(entry, 16);
  else if (entry.length === 2) addr = lookup(half(0x14), abi.code(entry));
  else {
    let i = abi.FLOAT_ENTRIES.indexOf(entry), t = 'SF';
    if (i < 0) { i = abi.DOUBLE_ENTRIES.indexOf(entry); t = 'SD'; }
    if (i < 0) throw new Error(`unknown entry ${entry}`);
    const table = lookup(half(0x16), abi.code(t));
    addr = mcu.readUint32(table + 4 * i);
  }
  cache[entry] = addr;
  return addr;
}

const results = [];
for (const c of req.calls) {
  try {
    for (const [addr, hex] of c.write || []) {
      const bytes = Buffer.from(hex, 'hex');
      bytes.forEach((b, i) => mcu.writeUint8(addr + i, b));
    }
    const addr = resolve(c.entry);
    if (!(addr & 1) && c.entry !== 'lookup') throw new Error(`${c.entry}: address 0x${addr.toString(16)} lacks the Thumb bit`);
    const r7 = c.r7 === undefined ? undefined : resolve(c.r7);
    const out = board.call(addr, (c.args || []).map((a) => Number(BigInt.asUintN(32, BigInt(a)))), { r7 });
    out.read = (c.read || []).map(([a, n]) => Buffer.from(Array.from({ length: n }, (_, i) => mcu.readUint8(a + i))).toString('hex'));
    out.flash_read = (c.flash_read || []).map(([o, n]) => Buffer.from(mcu.flash.subarray(o, o + n)).toString('hex'));
    results.push(out);
  } catch (e) {
    results.push({ error: e.message });
  }
}
process.stdout.write(JSON.stringify({ results, stats: board.stats }) + '\n');
