"""Our own RP2040 boot ROM (emulator/rom/): header, tables, the Thumb entries.

Each entry is called on rp2040js's CPU (emulator/romcall.js resolves it
through the ROM's own tables and runs it until it returns) and its result
compared with the datasheet's description computed here in Python.
"""
import os
import random
import struct
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "emulator"))
from emulated_board import ROM, ensure_built, rom_calls  # noqa: E402

FUNC_CODES = ["P3", "R3", "L3", "T3", "MS", "S4", "MC", "C4", "IF", "EX", "RE", "RP", "FC", "CX",
              "UB", "DT", "DE", "WV"]
DATA_CODES = ["CR", "GR", "FS", "SF", "FE", "SD", "FZ"]
RAM = 0x20010000


def code(s):
    return ord(s[0]) | ord(s[1]) << 8


@pytest.fixture(scope="module")
def rom():
    ensure_built()
    with open(ROM, "rb") as f:
        return f.read()


def half(rom, addr):
    return struct.unpack_from("<H", rom, addr)[0]


def table(rom, ptr_addr):
    """(code, value) pairs of the table whose 16-bit pointer is at ptr_addr."""
    t, out = half(rom, ptr_addr), {}
    while half(rom, t):
        out[half(rom, t)] = half(rom, t + 2)
        t += 4
    return out


def one(call):
    (res,) = rom_calls([call])["results"]
    assert "error" not in res, res["error"]
    return res


# ---------------------------------------------------------------- layout

def test_header_magic_version_and_vectors(rom):
    assert len(rom) <= 16384
    assert rom[0x10:0x13] == b"Mu\x01"
    assert rom[0x13] == 3                                   # pico_float/double: V3 tables
    sp, reset = struct.unpack_from("<II", rom, 0)
    assert sp == 0x20041F00                                 # below the boot2 copy
    assert reset & 1 and reset < 16384
    assert half(rom, 0x18) & 1                              # lookup routine: Thumb bit


def test_function_table_has_every_datasheet_entry_as_thumb_code(rom):
    funcs = table(rom, 0x14)
    assert sorted(funcs) == sorted(code(c) for c in FUNC_CODES)
    for c, addr in funcs.items():
        assert addr & 1 and addr < 16384, "%r -> %#x" % (chr(c & 0xFF) + chr(c >> 8), addr)


def test_data_table_and_soft_float_tables(rom):
    data = table(rom, 0x16)
    assert sorted(data) == sorted(code(c) for c in DATA_CODES)
    copyright_ = rom[data[code("CR")]:rom.index(b"\0", data[code("CR")])]
    assert b"Raspberry" not in copyright_ and copyright_                # our own string
    for name in ("SF", "SD"):
        t = data[code(name)]
        assert rom[t - 2] == 32                             # size in words, read by pico_float
        ptrs = struct.unpack_from("<32I", rom, t)
        assert all(p & 1 and p < 16384 for p in ptrs)
        assert len(set(ptrs)) == 32
    assert data[code("FZ")] == data[code("SF")] - 2
    assert data[code("FS")] <= min(struct.unpack_from("<32I", rom, data[code("SF")])) & ~1
    assert data[code("FE")] > max(struct.unpack_from("<32I", rom, data[code("SD")])) & ~1


def test_lookup_routine_finds_codes_and_stops_on_an_absent_one(rom):
    res = rom_calls([
        {"entry": "lookup", "args": [half(rom, 0x14), code("MC")]},
        {"entry": "lookup", "args": [half(rom, 0x16), code("SF")]},
        {"entry": "lookup", "args": [half(rom, 0x16), code("P8")]},   # V1-only, deprecated
        {"entry": "ZZ"},
    ])["results"]
    assert res[0]["r"][0] == table(rom, 0x14)[code("MC")]
    assert res[1]["r"][0] == table(rom, 0x16)[code("SF")]
    assert res[2]["error"] == "ROM lookup of 'P8' (0x3850) in the data table: this ROM has no such entry"
    assert "'ZZ'" in res[3]["error"] and "function table" in res[3]["error"]


# ---------------------------------------------------------------- bit ops

BIT_VALUES = [0, 1, 2, 3, 0x80000000, 0xFFFFFFFF, 0x7FFFFFFF, 0x00010000, 0x0000FFFF, 0xF0F0F0F0,
              0x12345678] + [random.Random(1).getrandbits(32) for _ in range(40)]


def clz(v):
    return 32 - v.bit_length()


def ctz(v):
    return 32 if v == 0 else (v & -v).bit_length() - 1


def test_bit_ops():
    calls = [{"entry": e, "args": [v]} for v in BIT_VALUES for e in ("P3", "R3", "L3", "T3")]
    res = iter(rom_calls(calls)["results"])
    for v in BIT_VALUES:
        assert next(res)["r"][0] == bin(v).count("1"), hex(v)
        assert next(res)["r"][0] == int("{:032b}".format(v)[::-1], 2), hex(v)
        assert next(res)["r"][0] == clz(v), hex(v)
        assert next(res)["r"][0] == ctz(v), hex(v)


# ---------------------------------------------------------------- mem ops

def test_memset_and_memset4_write_exactly_n_bytes_and_return_ptr():
    calls, cases = [], []
    for entry, aligns in (("MS", range(4)), ("S4", [0])):
        for align in aligns:
            for n in list(range(0, 21)) + [63, 64, 257]:
                dst = RAM + 0x100 + align
                calls.append({"entry": entry, "args": [dst, 0xA5, n],
                              "write": [[RAM, "5a" * 0x400]], "read": [[RAM + 0x100 - 8, n + 16]]})
                cases.append((entry, dst, n))
    for (entry, dst, n), res in zip(cases, rom_calls(calls)["results"]):
        assert res["r"][0] == dst, (entry, n)
        got = bytes.fromhex(res["read"][0])
        assert got == b"\x5a" * (8 + (dst & 3)) + b"\xa5" * n + b"\x5a" * (8 - (dst & 3)), (entry, dst & 3, n)


def test_memcpy_and_memcpy44_copy_exactly_n_bytes_and_return_dest():
    src_data = bytes(range(256)) * 2
    calls, cases = [], []
    for entry, pairs in (("MC", [(d, s) for d in range(4) for s in range(4)]), ("C4", [(0, 0)])):
        for da, sa in pairs:
            for n in [0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 64, 100, 300]:
                dst, src = RAM + 0x100 + da, RAM + 0x1000 + sa
                calls.append({"entry": entry, "args": [dst, src, n],
                              "write": [[RAM, "00" * 0x400], [RAM + 0x1000, src_data.hex()]],
                              "read": [[RAM + 0x100 - 8, n + 16]]})
                cases.append((entry, dst, sa, n))
    for (entry, dst, sa, n), res in zip(cases, rom_calls(calls)["results"]):
        assert res["r"][0] == dst
        pre = 8 + (dst & 3)
        got = bytes.fromhex(res["read"][0])
        assert got == b"\0" * pre + src_data[sa:sa + n] + b"\0" * (16 - pre), (entry, dst & 3, sa, n)


# ---------------------------------------------------------------- flash

def test_flash_erase_program_and_the_no_op_flash_entries():
    flash = bytes(range(256)) * 64                                   # 16 KB of a pattern
    data = bytes((i * 7) & 0xFF for i in range(512))
    res = rom_calls([
        {"entry": "IF"}, {"entry": "EX"},
        {"entry": "RE", "args": [4096, 4096, 1 << 16, 0xD8], "flash_read": [[4090, 4108]]},
        {"entry": "RP", "args": [4096, RAM, 512], "write": [[RAM, data.hex()]], "flash_read": [[4096, 512]]},
        {"entry": "RP", "args": [8192 + 256, RAM + 1, 256], "flash_read": [[8192 + 256, 256]]},  # unaligned src
        {"entry": "RE", "args": [12288 + 100, 10, 0, 0], "flash_read": [[12288, 4096], [12287, 1]]},
        {"entry": "FC"}, {"entry": "CX"},
    ], flash=flash)
    r = res["results"]
    assert all("error" not in x for x in r), r
    erased = bytes.fromhex(r[2]["flash_read"][0])
    assert erased == flash[4090:4096] + b"\xff" * 4096 + flash[8192:8198]
    assert bytes.fromhex(r[3]["flash_read"][0]) == data                 # onto erased flash: the data
    old = flash[8192 + 256:8192 + 512]
    assert bytes.fromhex(r[4]["flash_read"][0]) == bytes(a & b for a, b in zip(old, data[1:257]))  # NOR: AND
    assert bytes.fromhex(r[5]["flash_read"][0]) == b"\xff" * 4096                 # partial -> whole sector
    assert bytes.fromhex(r[5]["flash_read"][1]) == flash[12287:12288]
    assert res["stats"]["flash_writes"] == 4                            # each op reported to the harness


def test_harness_stubs_stop_with_a_message():
    res = rom_calls([{"entry": "UB", "args": [1 << 25, 0]}, {"entry": "WV"}])["results"]
    assert "reset_to_usb_boot(0x2000000, 0x0) called" in res[0]["error"]
    assert "BOOTSEL mode is not emulated" in res[0]["error"]
    assert "core 1 is not emulated" in res[1]["error"]


def test_debug_trampoline_calls_r7_and_stops_at_its_end_breakpoint():
    (res,) = rom_calls([{"entry": "DT", "args": [0xF0F0], "r7": "P3"}])["results"]
    # popcount32(0xf0f0) ran through the trampoline, then BKPT #0 at debug_trampoline_end
    assert res["error"] == "debug_trampoline_end reached (r0=0x8)"
