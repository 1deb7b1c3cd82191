"""The boot ROM's soft float and soft double tables against CPython's IEEE results.

Every entry of both tables (datasheet "Bootrom" chapter, pico-sdk
pico/bootrom/sf_table.h) is called through the ROM's table on the emulated
CPU and compared bit for bit with the reference below: CPython's IEEE double
arithmetic, float32 via struct, exact conversions via int/Fraction, plus the
ROM's documented rules (denormals flushed to zero on input and output, no NaN:
NaN inputs are infinities of their sign, float->int conversions round towards
minus infinity and clamp).  Transcendental entries are compared to math.* to
within 1 ulp.
"""
import math
import os
import random
import struct
import sys
from fractions import Fraction

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "emulator"))
from emulated_board import rom_calls  # noqa: E402

INF = float("inf")
FLT_MIN = 2.0 ** -126
DBL_MIN = 2.0 ** -1022


# ---------------------------------------------------------------- float32 model

def f_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def f_val(bits):
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def fin(bits, flush=True):
    """A float argument as the ROM reads it."""
    exp, neg = (bits >> 23) & 0xFF, bits >> 31
    if exp == 0xFF:
        return -INF if neg else INF
    if exp == 0 and flush:
        return -0.0 if neg else 0.0
    return f_val(bits)


def to_f32(x):
    """Round a double to float32 (nearest even; overflow -> inf) with CPython's struct."""
    try:
        return f_val(f_bits(x))
    except OverflowError:
        return math.copysign(INF, x)


def fout(x):
    """A float result as the ROM returns it: rounded, denormals flushed, never NaN."""
    if math.isnan(x):
        x = INF
    r = to_f32(x)
    if r != 0 and abs(r) < FLT_MIN:
        r = math.copysign(0.0, r)
    return f_bits(r)


def d_bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def d_val(bits):
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def din(bits, flush=True):
    exp, neg = (bits >> 52) & 0x7FF, bits >> 63
    if exp == 0x7FF:
        return -INF if neg else INF
    if exp == 0 and flush:
        return -0.0 if neg else 0.0
    return d_val(bits)


def dout(x):
    if math.isnan(x):
        x = INF
    if x != 0 and abs(x) < DBL_MIN:
        x = math.copysign(0.0, x)
    return d_bits(x)


# ---- the operations, with the ROM's answers where IEEE would give NaN

def sign_xor_inf(a, b):
    return -INF if (math.copysign(1, a) * math.copysign(1, b)) < 0 else INF


def add(a, b):
    if math.isinf(a) and math.isinf(b) and a != b:
        return a                                  # inf - inf: the first operand
    return a + b


def mul(a, b):
    if (a == 0 and math.isinf(b)) or (b == 0 and math.isinf(a)):
        return sign_xor_inf(a, b)
    return a * b


def div(a, b):
    if (math.isinf(a) and math.isinf(b)) or (a == 0 and b == 0):
        return sign_xor_inf(a, b)
    if b == 0:
        return sign_xor_inf(a, b)                 # IEEE: x/0 = inf of the sign XOR
    return a / b


def sqrt(a):
    if a < 0:
        return -INF                               # datasheet: -Infinity if v is negative
    return math.sqrt(a) if a else a               # sqrt(-0) = -0


def ln(a):
    return -INF if a <= 0 else (INF if math.isinf(a) else math.log(a))


def exp(a):
    try:
        return math.exp(a)
    except OverflowError:
        return INF


def cmp(a, b):
    return -1 if a < b else 1 if a > b else 0


def floor_fix(x, n, lo, hi):
    """floor(x * 2**n) clamped; the conversion rule of every float->int entry."""
    if math.isinf(x):
        return hi if x > 0 else lo
    v = math.floor(Fraction(x) * Fraction(2) ** n)
    return max(lo, min(hi, v))


def round_fraction(q, bits, _min_exp):
    """Nearest (ties to even) value of the exact rational q with `bits` significant bits."""
    if q == 0:
        return 0.0
    neg, q = q < 0, abs(q)
    e = q.numerator.bit_length() - q.denominator.bit_length()
    while Fraction(2) ** e > q:
        e -= 1
    while Fraction(2) ** (e + 1) <= q:
        e += 1
    scale = Fraction(2) ** (e - bits + 1)
    m = round(q / scale)                          # Fraction round(): ties to even
    try:
        v = float(m * scale)
    except OverflowError:
        v = INF
    return -v if neg else v


def u32(v):
    return v & 0xFFFFFFFF


def s32(v):
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


I32 = (-(1 << 31), (1 << 31) - 1)
U32 = (0, (1 << 32) - 1)
I64 = (-(1 << 63), (1 << 63) - 1)
U64 = (0, (1 << 64) - 1)


def lo_hi(v):
    v &= (1 << 64) - 1
    return [v & 0xFFFFFFFF, v >> 32]


# ---------------------------------------------------------------- inputs

F_EDGES = [
    0x00000000, 0x80000000,                       # +0, -0
    0x00000001, 0x807FFFFF, 0x00400000,           # denormals
    0x00800000, 0x80800000, 0x00800001,           # smallest normals
    0x3F800000, 0xBF800000, 0x3FC00000, 0x40000000, 0x3F000000,   # 1, -1, 1.5, 2, 0.5
    0x3DCCCCCD, 0x40490FDB, 0xC2F6E979,           # 0.1, pi, -123.456
    0x4B800000, 0x4B800001, 0x4EFFFFFF, 0x4F000000, 0xCF000000, 0x4F800000,   # 2**24.., 2**31, 2**32
    0x5F000000, 0xDF000000, 0x3F7FFFFF, 0x33800000,                            # 2**63, 1-ulp, 2**-24
    0x7F7FFFFF, 0xFF7FFFFF, 0x7F000000,           # FLT_MAX, -FLT_MAX, 2**127
    0x7F800000, 0xFF800000,                       # +-inf
    0x7FC00000, 0xFFC00000, 0x7F800001,           # NaNs
]
RNG = random.Random(20240611)
F_RANDOM = [RNG.getrandbits(32) for _ in range(150)] + \
    [f_bits(RNG.uniform(-1e3, 1e3)) for _ in range(150)]

D_EDGES = [d_bits(x) for x in (0.0, -0.0, 1.0, -1.0, 1.5, 0.1, math.pi, -123.456, 2.0 ** 31, 2.0 ** 32,
                               2.0 ** 53, 2.0 ** 53 + 2, 2.0 ** 63, -2.0 ** 63, 2.0 ** 64, 1e308, -1e308,
                               1.7976931348623157e308, DBL_MIN, -DBL_MIN, 0.5, 1 - 2.0 ** -53)] + \
    [0x0000000000000001, 0x800FFFFFFFFFFFFF, 0x7FF0000000000000, 0xFFF0000000000000,
     0x7FF8000000000000, 0xFFF8000000000000]
D_RANDOM = [RNG.getrandbits(64) for _ in range(120)] + [d_bits(RNG.uniform(-1e6, 1e6)) for _ in range(120)]

FIX_N = [0, 1, 3, 16, 31, -3, -16, 40, -40]
INTS32 = [0, 1, -1, 3, -3, 7, 0x7FFFFFFF, -0x80000000, 0x01000001, -0x01000001, 0x00FFFFFF, 0x7FFFFFC0,
          0x7FFFFFBF] + [s32(RNG.getrandbits(32)) for _ in range(60)]
INTS64 = [0, 1, -1, (1 << 63) - 1, -(1 << 63), 0x1234567800000000, -0x1234567800000000, (1 << 53) + 1,
          (1 << 24) + 1, (1 << 54) + 3, 0x0020000000000001] + \
    [RNG.getrandbits(64) - (1 << 63) for _ in range(60)]


def ulp_diff_f(a, b):
    def key(bits):
        return bits if bits < 0x80000000 else 0x80000000 - bits
    return abs(key(a) - key(b))


def ulp_diff_d(a, b):
    def key(bits):
        return bits if bits < 1 << 63 else (1 << 63) - bits
    return abs(key(a) - key(b))


def run(entry, cases, nregs=1):
    """Call `entry` with each args list; returns the list of result register lists."""
    res = rom_calls([{"entry": entry, "args": args} for args in cases])["results"]
    for args, r in zip(cases, res):
        assert "error" not in r, (entry, args, r["error"])
    return [r["r"][:nregs] + [r["N"], r["Z"], r["C"], r["V"]] for r in res]


def check(entry, cases, expected, nregs=1):
    got = run(entry, cases, nregs)
    bad = [(c, [hex(x) for x in g[:nregs]], [hex(x) for x in e])
           for c, g, e in zip(cases, got, expected) if g[:nregs] != e]
    assert not bad, "%s: %d of %d differ, first: args %s got %s expected %s" % (
        entry, len(bad), len(cases), [hex(a) for a in bad[0][0]], bad[0][1], bad[0][2])


def pairs(values, extra):
    return [[a, b] for a in values for b in values] + [[extra[i], extra[-1 - i]] for i in range(len(extra))]


FP_PAIRS = pairs(F_EDGES, F_RANDOM)
FP_ONE = [[a] for a in F_EDGES + F_RANDOM]
DP_PAIRS = [[*lo_hi(a), *lo_hi(b)] for a, b in pairs(D_EDGES, D_RANDOM)]
DP_ONE = [lo_hi(a) for a in D_EDGES + D_RANDOM]


def da(args):
    return din(args[0] | args[1] << 32)


def db(args):
    return din(args[2] | args[3] << 32)


# ---------------------------------------------------------------- float table

@pytest.mark.parametrize("entry,op", [("fadd", add), ("fsub", lambda a, b: add(a, -b)),
                                      ("fmul", mul), ("fdiv", div)])
def test_float_arithmetic_is_correctly_rounded(entry, op):
    check(entry, FP_PAIRS, [[fout(op(fin(a), fin(b)))] for a, b in FP_PAIRS])


def test_float_arithmetic_documented_edges():
    # ties to even, overflow, denormal results flushed, no NaN
    one, tiny = 0x3F800000, 0x33800000                # 1.0, 2**-24 (half an ulp of 1.0)
    cases = [("fadd", [one, tiny], 0x3F800000),        # 1 + half ulp -> tie -> even (1.0)
             ("fadd", [0x3F800001, tiny], 0x3F800002),  # odd + half ulp -> up to even
             ("fmul", [0x7F7FFFFF, 0x40000000], 0x7F800000),   # FLT_MAX * 2 -> inf
             ("fmul", [0x00800000, 0x3F000000], 0x00000000),   # FLT_MIN / 2 -> flushed
             ("fmul", [0x80800000, 0x3F000000], 0x80000000),   # ... keeping its sign
             ("fadd", [0x00000001, 0x00000001], 0x00000000),   # denormal inputs are zeros
             ("fsub", [0x7F800000, 0x7F800000], 0x7F800000),   # inf - inf: no NaN
             ("fmul", [0x00000000, 0xFF800000], 0xFF800000),   # 0 * -inf
             ("fdiv", [0x00000000, 0x00000000], 0x7F800000),   # 0 / 0
             ("fdiv", [0x3F800000, 0x80000000], 0xFF800000),   # 1 / -0
             ("fadd", [0x7FC00000, 0x3F800000], 0x7F800000)]   # NaN is an infinity
    for entry, args, want in cases:
        assert run(entry, [args])[0][0] == want, (entry, [hex(a) for a in args])


def test_fsqrt():
    check("fsqrt", FP_ONE, [[fout(sqrt(fin(a)))] for (a,) in FP_ONE])
    assert run("fsqrt", [[f_bits(-3.0)]])[0][0] == 0xFF800000          # datasheet: -inf


@pytest.mark.parametrize("entry", ["fcmp", "fcmp_fast", "fcmp_fast_flags"])
def test_float_compares_return_and_set_flags_like_cmp(entry):
    flush = entry == "fcmp"
    got = run(entry, FP_PAIRS)
    for (a, b), g in zip(FP_PAIRS, got):
        c = cmp(fin(a, flush), fin(b, flush))
        assert s32(g[0]) == c, (entry, hex(a), hex(b))
        n, z, cflag, v = g[1:]
        assert (n, z, cflag, v) == (c < 0, c == 0, c >= 0, False), (entry, hex(a), hex(b))
    # the fast compares see denormals, fcmp flushes them
    d1, d2 = 0x00000001, 0x007FFFFF
    assert s32(run(entry, [[d1, d2]])[0][0]) == (0 if flush else -1)


@pytest.mark.parametrize("entry,n_arg,lohi", [("float2int", False, I32), ("float2uint", False, U32),
                                              ("float2fix", True, I32), ("float2ufix", True, U32)])
def test_float_to_int_rounds_towards_minus_infinity_and_clamps(entry, n_arg, lohi):
    ns = FIX_N if n_arg else [0]
    cases = [[a, u32(n)] for (a,) in FP_ONE for n in ns] if n_arg else FP_ONE
    exp_ = [[u32(floor_fix(fin(c[0]), s32(c[1]) if n_arg else 0, *lohi))] for c in cases]
    check(entry, cases, exp_)
    if entry == "float2int":
        assert [s32(r[0]) for r in run(entry, [[f_bits(-0.5)], [f_bits(2.5)], [f_bits(-2.5)], [0x7FC00000]])] \
            == [-1, 2, -3, 0x7FFFFFFF]


@pytest.mark.parametrize("entry,n_arg,lohi", [("float2int64", False, I64), ("float2uint64", False, U64),
                                              ("float2fix64", True, I64), ("float2ufix64", True, U64)])
def test_float_to_int64(entry, n_arg, lohi):
    ns = FIX_N + [43, -43, 70] if n_arg else [0]
    cases = [[a, u32(n)] for (a,) in FP_ONE for n in ns] if n_arg else FP_ONE
    check(entry, cases, [lo_hi(floor_fix(fin(c[0]), s32(c[1]) if n_arg else 0, *lohi)) for c in cases], 2)


def test_int_and_fix_to_float_round_to_nearest_even():
    check("int2float", [[u32(i)] for i in INTS32], [[fout(round_fraction(Fraction(i), 24, -126))] for i in INTS32])
    check("uint2float", [[u32(i)] for i in INTS32], [[fout(round_fraction(Fraction(u32(i)), 24, -126))] for i in INTS32])
    cases = [[u32(i), u32(n)] for i in INTS32 for n in FIX_N + [150, -110]]
    check("fix2float", cases, [[fout(round_fraction(Fraction(s32(v)) / Fraction(2) ** s32(n), 24, -126))]
                               for v, n in cases])
    check("ufix2float", cases, [[fout(round_fraction(Fraction(v) / Fraction(2) ** s32(n), 24, -126))]
                                for v, n in cases])


def test_int64_and_fix64_to_float():
    one = [lo_hi(i) for i in INTS64]
    check("int642float", one, [[fout(round_fraction(Fraction(i), 24, -126))] for i in INTS64])
    check("uint642float", one, [[fout(round_fraction(Fraction(i & (2 ** 64 - 1)), 24, -126))] for i in INTS64])
    cases = [lo_hi(i) + [u32(n)] for i in INTS64 for n in (0, 3, -3, 40, -40)]

    def val(c, signed):
        v = c[0] | c[1] << 32
        if signed and v >> 63:
            v -= 1 << 64
        return Fraction(v) / Fraction(2) ** s32(c[2])
    check("fix642float", cases, [[fout(round_fraction(val(c, True), 24, -126))] for c in cases])
    check("ufix642float", cases, [[fout(round_fraction(val(c, False), 24, -126))] for c in cases])


def test_float2double_is_exact_with_flushed_denormals():
    check("float2double", FP_ONE, [lo_hi(dout(fin(a))) for (a,) in FP_ONE], 2)


@pytest.mark.parametrize("entry,fn", [("fsin", math.sin), ("fcos", math.cos), ("ftan", math.tan),
                                      ("fexp", exp), ("fln", ln)])
def test_float_scientific_within_one_ulp(entry, fn):
    if entry in ("fsin", "fcos", "ftan"):
        vals = [f_bits(x) for x in (0.0, -0.0, 1.0, -1.0, 0.5, 2.7, -32.7, 100.0, -127.9, 1e-3, 3.14159)] + \
            [f_bits(RNG.uniform(-127, 127)) for _ in range(120)]
    elif entry == "fexp":
        vals = [f_bits(x) for x in (0.0, 1.0, -1.0, 2.7, -32.7, 88.0, 89.0, -87.0, -104.0)] + \
            [0x7F800000, 0xFF800000] + [f_bits(RNG.uniform(-80, 80)) for _ in range(120)]
    else:
        vals = [f_bits(x) for x in (0.3, 1.0, 2.7, 1e-30, 3e38, -32.7, 0.0, -0.0)] + [0x7F800000] + \
            [f_bits(RNG.uniform(1e-6, 1e6)) for _ in range(120)]
    got = run(entry, [[v] for v in vals])
    for v, g in zip(vals, got):
        want = fout(fn(fin(v)))
        assert ulp_diff_f(g[0], want) <= 1, (entry, fin(v), f_val(g[0]), f_val(want))
    if entry == "fln":
        assert run("fln", [[f_bits(-32.7)]])[0][0] == 0xFF800000          # datasheet: -inf


def test_fatan2_and_fsincos():
    vals = [(3.0, 4.0), (-3.0, 4.0), (4.0, -0.31), (-3.0, -0.17), (0.0, 1.0), (1.0, 0.0), (0.0, -1.0)] + \
        [(RNG.uniform(-100, 100), RNG.uniform(-100, 100)) for _ in range(60)]
    got = run("fatan2", [[f_bits(y), f_bits(x)] for y, x in vals])
    for (y, x), g in zip(vals, got):
        want = fout(math.atan2(to_f32(y), to_f32(x)))
        assert ulp_diff_f(g[0], want) <= 1, (y, x)
    angles = [f_bits(-0.3 + 0.137 * i) for i in range(53)]
    sc = run("fsincos", [[a] for a in angles], 2)
    s = run("fsin", [[a] for a in angles])
    c = run("fcos", [[a] for a in angles])
    assert [r[:2] for r in sc] == [[x[0], y[0]] for x, y in zip(s, c)]    # sin r0, cos r1, same values


# ---------------------------------------------------------------- double table

@pytest.mark.parametrize("entry,op", [("dadd", add), ("dsub", lambda a, b: add(a, -b)),
                                      ("dmul", mul), ("ddiv", div)])
def test_double_arithmetic_is_ieee_with_flushed_denormals(entry, op):
    check(entry, DP_PAIRS, [lo_hi(dout(op(da(c), db(c)))) for c in DP_PAIRS], 2)


def test_double_sqrt_and_compares():
    check("dsqrt", DP_ONE, [lo_hi(dout(sqrt(da(c)))) for c in DP_ONE], 2)
    for entry in ("dcmp", "dcmp_fast", "dcmp_fast_flags"):
        flush = entry == "dcmp"
        got = run(entry, DP_PAIRS)
        for c, g in zip(DP_PAIRS, got):
            want = cmp(din(c[0] | c[1] << 32, flush), din(c[2] | c[3] << 32, flush))
            assert s32(g[0]) == want and tuple(g[1:]) == (want < 0, want == 0, want >= 0, False), (entry, c)


@pytest.mark.parametrize("entry,n_arg,lohi,regs", [
    ("double2int", False, I32, 1), ("double2uint", False, U32, 1), ("double2fix", True, I32, 1),
    ("double2ufix", True, U32, 1), ("double2int64", False, I64, 2), ("double2uint64", False, U64, 2),
    ("double2fix64", True, I64, 2), ("double2ufix64", True, U64, 2)])
def test_double_to_int_rounds_towards_minus_infinity_and_clamps(entry, n_arg, lohi, regs):
    ns = FIX_N if n_arg else [0]
    cases = [c + [u32(n)] for c in DP_ONE for n in ns]
    expected = []
    for c in cases:
        v = floor_fix(da(c), s32(c[2]), *lohi)
        expected.append(lo_hi(v) if regs == 2 else [u32(v)])
    check(entry, cases, expected, regs)


def test_int_and_fix_to_double():
    check("int2double", [[u32(i)] for i in INTS32], [lo_hi(dout(float(i))) for i in INTS32], 2)
    check("uint2double", [[u32(i)] for i in INTS32], [lo_hi(dout(float(u32(i)))) for i in INTS32], 2)
    cases = [[u32(i), u32(n)] for i in INTS32 for n in FIX_N + [1100, -1100]]

    def q(v, n):
        x = Fraction(v) / Fraction(2) ** n
        return round_fraction(x, 53, -1022)
    check("fix2double", cases, [lo_hi(dout(q(s32(v), s32(n)))) for v, n in cases], 2)
    check("ufix2double", cases, [lo_hi(dout(q(v, s32(n)))) for v, n in cases], 2)
    one = [lo_hi(i) for i in INTS64]
    check("int642double", one, [lo_hi(dout(float(i))) for i in INTS64], 2)
    check("uint642double", one, [lo_hi(dout(float(i & (2 ** 64 - 1)))) for i in INTS64], 2)
    c64 = [lo_hi(i) + [u32(n)] for i in INTS64 for n in (0, 5, -5, 60, -60)]

    def v64(c, signed):
        v = c[0] | c[1] << 32
        return v - (1 << 64) if signed and v >> 63 else v
    check("fix642double", c64, [lo_hi(dout(float(Fraction(v64(c, True)) / Fraction(2) ** s32(c[2])))) for c in c64], 2)
    check("ufix642double", c64, [lo_hi(dout(float(Fraction(v64(c, False)) / Fraction(2) ** s32(c[2])))) for c in c64], 2)


def test_double2float_rounds_and_flushes():
    vals = DP_ONE + [lo_hi(d_bits(x)) for x in (1 + 2.0 ** -24, 1 + 3 * 2.0 ** -24, 3.4028235e38, 3.4028236e38,
                                               1e39, 1.0e-39, 1.1754942e-38, 1.1754944e-38)]
    check("double2float", vals, [[fout(da(c))] for c in vals])


@pytest.mark.parametrize("entry,fn", [("dsin", math.sin), ("dcos", math.cos), ("dtan", math.tan),
                                      ("dexp", exp), ("dln", ln)])
def test_double_scientific_within_one_ulp(entry, fn):
    if entry in ("dsin", "dcos", "dtan"):
        vals = [0.0, 1.0, -1.0, 2.7, -32.7, 1000.0, -1023.5, 1e-8] + [RNG.uniform(-1000, 1000) for _ in range(100)]
    elif entry == "dexp":
        vals = [0.0, 1.0, -1.0, 700.0, 710.0, -700.0, -746.0] + [RNG.uniform(-700, 700) for _ in range(100)]
    else:
        vals = [0.3, 1.0, 2.7, 1e-300, 1e300, -5.0, 0.0] + [RNG.uniform(1e-9, 1e9) for _ in range(100)]
    got = run(entry, [lo_hi(d_bits(v)) for v in vals], 2)
    for v, g in zip(vals, got):
        want = dout(fn(v))
        assert ulp_diff_d(g[0] | g[1] << 32, want) <= 1, (entry, v)


def test_datan2_and_dsincos():
    vals = [(3.0, 4.0), (-3.0, -0.17), (0.0, -1.0)] + [(RNG.uniform(-9, 9), RNG.uniform(-9, 9)) for _ in range(40)]
    got = run("datan2", [lo_hi(d_bits(y)) + lo_hi(d_bits(x)) for y, x in vals], 2)
    for (y, x), g in zip(vals, got):
        assert ulp_diff_d(g[0] | g[1] << 32, d_bits(math.atan2(y, x))) <= 1
    angles = [-0.3 + 0.137 * i for i in range(53)]
    sc = run("dsincos", [lo_hi(d_bits(a)) for a in angles], 4)
    for a, g in zip(angles, sc):
        assert ulp_diff_d(g[0] | g[1] << 32, d_bits(math.sin(a))) <= 1
        assert ulp_diff_d(g[2] | g[3] << 32, d_bits(math.cos(a))) <= 1
