'use strict';
/*
 * The ROM's soft float and soft double table entries, implemented in the
 * harness (each ROM entry is `bkpt #n; bx lr`, see rom/start.S).
 *
 * Semantics, from the RP2040 datasheet ("Bootrom" chapter, fast floating
 * point library) and pico-sdk's pico/bootrom/sf_table.h:
 *  - add, sub, mul, div, sqrt and the int/fix -> float conversions are
 *    correctly rounded (nearest, ties to even).  JavaScript computes in IEEE
 *    double; rounding a double result of +,-,*,/,sqrt of two floats to float
 *    gives the correctly rounded float result (53 >= 2*24+2), so
 *    Math.fround(a op b) is exact.  64-bit integer inputs are rounded from
 *    BigInt directly (never through a double first).
 *  - float/double -> int/fix conversions round towards minus infinity and
 *    clamp to the result type's range (computed exactly with BigInt).
 *  - denormals are not supported: a denormal input is a zero of its sign, a
 *    result below the smallest normal is flushed to a zero of its sign.
 *  - NaN is not supported: a NaN input is an infinity of its sign, and no
 *    entry returns NaN.  Where IEEE would produce NaN the ROM gives an
 *    infinity: sqrt(x<0) = -inf and ln(x<=0) = -inf (datasheet); our choices
 *    for the others: inf-inf -> the first operand, 0*inf and inf/inf and
 *    0/0 -> an infinity with the XOR of the signs.  (pico-sdk's
 *    PICO_FLOAT_PROPAGATE_NANS wrappers turn those infinities back into NaN.)
 *  - compares: -1/0/1 in r0, and the flags as `CMP a, b` would set them
 *    (N: a<b, Z: a==b, C: a>=b, V clear).  The V2 compare (offset 0x54)
 *    flushes denormals; the fast ones (0x10, 0x14) compare them as they are.
 *  - sin/cos/tan/exp/ln/atan2: JavaScript's Math on the (flushed) argument,
 *    rounded to the result type; the ROM documents its range limits
 *    (|x| < 128 for float, < 1024 for double), we are accurate beyond them.
 *  - sincos (offset 0x48, ROM V3): sin in r0 (r0:r1), cos in r1 (r2:r3).
 *  - float2double / double2float convert with the same rules.
 */

const buf = new DataView(new ArrayBuffer(8));
const MIN_NORMAL_F = 2 ** -126;
const MIN_NORMAL_D = 2 ** -1022;
const I32_MIN = -(2n ** 31n), I32_MAX = 2n ** 31n - 1n, U32_MAX = 2n ** 32n - 1n;
const I64_MIN = -(2n ** 63n), I64_MAX = 2n ** 63n - 1n, U64_MAX = 2n ** 64n - 1n;

// ---- decoding arguments (denormal -> signed zero, NaN -> signed infinity)

function fIn(bits, flush = true) {
  bits >>>= 0;
  const exp = (bits >>> 23) & 0xff;
  const neg = bits >>> 31;
  if (exp === 0xff) return neg ? -Infinity : Infinity;
  if (exp === 0 && flush) return neg ? -0 : 0;
  buf.setUint32(0, bits, true);
  return buf.getFloat32(0, true);
}

function dIn(lo, hi, flush = true) {
  hi >>>= 0;
  const exp = (hi >>> 20) & 0x7ff;
  const neg = hi >>> 31;
  if (exp === 0x7ff) return neg ? -Infinity : Infinity;
  if (exp === 0 && flush) return neg ? -0 : 0;
  buf.setUint32(0, lo >>> 0, true);
  buf.setUint32(4, hi, true);
  return buf.getFloat64(0, true);
}

// ---- encoding results (round, flush, never NaN)

function fOut(x) {
  if (Number.isNaN(x)) x = Infinity;
  let r = Math.fround(x);
  if (r !== 0 && Math.abs(r) < MIN_NORMAL_F) r = r < 0 ? -0 : 0;
  buf.setFloat32(0, r, true);
  return buf.getUint32(0, true);
}

function dOut(x) {
  if (Number.isNaN(x)) x = Infinity;
  if (x !== 0 && Math.abs(x) < MIN_NORMAL_D) x = x < 0 ? -0 : 0;
  buf.setFloat64(0, x, true);
  return [buf.getUint32(0, true), buf.getUint32(4, true)];
}

// ---- exact helpers

/** x * 2**k without intermediate overflow (x finite double). */
function ldexp(x, k) {
  while (k > 1000) { x *= 2 ** 1000; k -= 1000; }
  while (k < -1000) { x *= 2 ** -1000; k += 1000; }
  return x * 2 ** k;
}

/** floor(x * 2**n) as a BigInt, exactly, for a finite double x. */
function floorScaled(x, n) {
  if (x === 0) return 0n;
  buf.setFloat64(0, x, true);
  const lo = BigInt(buf.getUint32(0, true));
  const hi = buf.getUint32(4, true);
  const neg = hi >>> 31;
  const exp = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | lo;
  let e;
  if (exp === 0) e = -1074; else { mant |= 1n << 52n; e = exp - 1075; }
  if (neg) mant = -mant;
  const shift = e + n;
  if (shift >= 0) return shift > 200 ? (neg ? -(2n ** 200n) : 2n ** 200n) : mant << BigInt(shift);
  if (shift < -200) return neg ? -1n : 0n;
  return mant >> BigInt(-shift);       // BigInt >> floors (towards -inf)
}

function clamp(v, lo, hi) { return v < lo ? lo : v > hi ? hi : v; }

/** Convert x (double, NaN/inf allowed as +-inf) to a clamped fix value. */
function toFix(x, n, lo, hi) {
  if (x === Infinity) return hi;
  if (x === -Infinity) return lo;
  return clamp(floorScaled(x, n), lo, hi);
}

/** Round a BigInt to the nearest value with `bits` significant bits (ties to even), as a double. */
function roundBig(v, bits) {
  if (v === 0n) return 0;
  const neg = v < 0n;
  let mag = neg ? -v : v;
  const len = mag.toString(2).length;
  let scale = 0;
  if (len > bits) {
    const shift = BigInt(len - bits);
    const q = mag >> shift;
    const rem = mag - (q << shift);
    const half = 1n << (shift - 1n);
    mag = (rem > half || (rem === half && (q & 1n))) ? q + 1n : q;
    scale = len - bits;
  }
  const r = ldexp(Number(mag), scale);
  return neg ? -r : r;
}

function u32(v) { return Number(BigInt.asUintN(32, v)); }
function split64(v) {
  const u = BigInt.asUintN(64, v);
  return [Number(u & 0xffffffffn), Number(u >> 32n)];
}
function big64(lo, hi, signed) {
  const v = (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
  return signed ? BigInt.asIntN(64, v) : v;
}
const s32 = (r) => r | 0;

// ---- arithmetic with the ROM's special cases

const signbit = (x) => x < 0 || Object.is(x, -0);
const xorInf = (a, b) => (signbit(a) !== signbit(b) ? -Infinity : Infinity);

function add(a, b) {
  if (Math.abs(a) === Infinity && Math.abs(b) === Infinity && a !== b) return a;
  return a + b;
}
function mul(a, b) {
  if ((a === 0 && Math.abs(b) === Infinity) || (b === 0 && Math.abs(a) === Infinity)) return xorInf(a, b);
  return a * b;
}
function div(a, b) {
  const bothInf = Math.abs(a) === Infinity && Math.abs(b) === Infinity;
  if (bothInf || (a === 0 && b === 0)) return xorInf(a, b);
  return a / b;
}
function sqrt(a) {
  if (a < 0) return -Infinity;
  return Math.sqrt(a);           // sqrt(-0) = -0
}
function ln(a) { return a <= 0 ? -Infinity : Math.log(a); }
function cmp(a, b) { return a < b ? -1 : a > b ? 1 : 0; }

// ---- the tables: name -> (regs) => {r: [r0, r1, ...], cmp?: int}
// regs: Uint32Array-like r0..r3 (unsigned).

const F = {
  fadd: (r) => [fOut(add(fIn(r[0]), fIn(r[1])))],
  fsub: (r) => [fOut(add(fIn(r[0]), -fIn(r[1])))],
  fmul: (r) => [fOut(mul(fIn(r[0]), fIn(r[1])))],
  fdiv: (r) => [fOut(div(fIn(r[0]), fIn(r[1])))],
  fcmp_fast: (r) => ({ cmp: cmp(fIn(r[0], false), fIn(r[1], false)) }),
  fcmp_fast_flags: (r) => ({ cmp: cmp(fIn(r[0], false), fIn(r[1], false)) }),
  fsqrt: (r) => [fOut(sqrt(fIn(r[0])))],
  float2int: (r) => [u32(toFix(fIn(r[0]), 0, I32_MIN, I32_MAX))],
  float2fix: (r) => [u32(toFix(fIn(r[0]), s32(r[1]), I32_MIN, I32_MAX))],
  float2uint: (r) => [u32(toFix(fIn(r[0]), 0, 0n, U32_MAX))],
  float2ufix: (r) => [u32(toFix(fIn(r[0]), s32(r[1]), 0n, U32_MAX))],
  int2float: (r) => [fOut(s32(r[0]))],
  fix2float: (r) => [fOut(ldexp(s32(r[0]), -s32(r[1])))],
  uint2float: (r) => [fOut(r[0] >>> 0)],
  ufix2float: (r) => [fOut(ldexp(r[0] >>> 0, -s32(r[1])))],
  fcos: (r) => [fOut(Math.cos(fIn(r[0])))],
  fsin: (r) => [fOut(Math.sin(fIn(r[0])))],
  ftan: (r) => [fOut(Math.tan(fIn(r[0])))],
  fsincos: (r) => [fOut(Math.sin(fIn(r[0]))), fOut(Math.cos(fIn(r[0])))],
  fexp: (r) => [fOut(Math.exp(fIn(r[0])))],
  fln: (r) => [fOut(ln(fIn(r[0])))],
  fcmp: (r) => ({ cmp: cmp(fIn(r[0]), fIn(r[1])) }),
  fatan2: (r) => [fOut(Math.atan2(fIn(r[0]), fIn(r[1])))],
  int642float: (r) => [fOut(roundBig(big64(r[0], r[1], true), 24))],
  fix642float: (r) => [fOut(ldexp(roundBig(big64(r[0], r[1], true), 24), -s32(r[2])))],
  uint642float: (r) => [fOut(roundBig(big64(r[0], r[1], false), 24))],
  ufix642float: (r) => [fOut(ldexp(roundBig(big64(r[0], r[1], false), 24), -s32(r[2])))],
  float2int64: (r) => split64(toFix(fIn(r[0]), 0, I64_MIN, I64_MAX)),
  float2fix64: (r) => split64(toFix(fIn(r[0]), s32(r[1]), I64_MIN, I64_MAX)),
  float2uint64: (r) => split64(toFix(fIn(r[0]), 0, 0n, U64_MAX)),
  float2ufix64: (r) => split64(toFix(fIn(r[0]), s32(r[1]), 0n, U64_MAX)),
  float2double: (r) => dOut(fIn(r[0])),
};

const dA = (r) => dIn(r[0], r[1]);
const dB = (r) => dIn(r[2], r[3]);

const D = {
  dadd: (r) => dOut(add(dA(r), dB(r))),
  dsub: (r) => dOut(add(dA(r), -dB(r))),
  dmul: (r) => dOut(mul(dA(r), dB(r))),
  ddiv: (r) => dOut(div(dA(r), dB(r))),
  dcmp_fast: (r) => ({ cmp: cmp(dIn(r[0], r[1], false), dIn(r[2], r[3], false)) }),
  dcmp_fast_flags: (r) => ({ cmp: cmp(dIn(r[0], r[1], false), dIn(r[2], r[3], false)) }),
  dsqrt: (r) => dOut(sqrt(dA(r))),
  double2int: (r) => [u32(toFix(dA(r), 0, I32_MIN, I32_MAX))],
  double2fix: (r) => [u32(toFix(dA(r), s32(r[2]), I32_MIN, I32_MAX))],
  double2uint: (r) => [u32(toFix(dA(r), 0, 0n, U32_MAX))],
  double2ufix: (r) => [u32(toFix(dA(r), s32(r[2]), 0n, U32_MAX))],
  int2double: (r) => dOut(s32(r[0])),
  fix2double: (r) => dOut(ldexp(s32(r[0]), -s32(r[1]))),
  uint2double: (r) => dOut(r[0] >>> 0),
  ufix2double: (r) => dOut(ldexp(r[0] >>> 0, -s32(r[1]))),
  dcos: (r) => dOut(Math.cos(dA(r))),
  dsin: (r) => dOut(Math.sin(dA(r))),
  dtan: (r) => dOut(Math.tan(dA(r))),
  dsincos: (r) => [...dOut(Math.sin(dA(r))), ...dOut(Math.cos(dA(r)))],
  dexp: (r) => dOut(Math.exp(dA(r))),
  dln: (r) => dOut(ln(dA(r))),
  dcmp: (r) => ({ cmp: cmp(dA(r), dB(r)) }),
  datan2: (r) => dOut(Math.atan2(dA(r), dB(r))),
  int642double: (r) => dOut(roundBig(big64(r[0], r[1], true), 53)),
  fix642double: (r) => dOut(ldexp(roundBig(big64(r[0], r[1], true), 53), -s32(r[2]))),
  uint642double: (r) => dOut(roundBig(big64(r[0], r[1], false), 53)),
  ufix642double: (r) => dOut(ldexp(roundBig(big64(r[0], r[1], false), 53), -s32(r[2]))),
  double2int64: (r) => split64(toFix(dA(r), 0, I64_MIN, I64_MAX)),
  double2fix64: (r) => split64(toFix(dA(r), s32(r[2]), I64_MIN, I64_MAX)),
  double2uint64: (r) => split64(toFix(dA(r), 0, 0n, U64_MAX)),
  double2ufix64: (r) => split64(toFix(dA(r), s32(r[2]), 0n, U64_MAX)),
  double2float: (r) => [fOut(dIn(r[0], r[1]))],
};

module.exports = { F, D, fIn, dIn, fOut, dOut, roundBig, floorScaled };
