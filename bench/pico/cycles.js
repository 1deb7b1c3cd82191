'use strict';
/*
 * A cycle counter for the emulated Pico, for the benchmark only.
 *
 *   NODE_OPTIONS="--require bench/pico/cycles.js" node emulator/run.js ...
 *
 * The Cortex-M0+ has no cycle counter (no DWT), but rp2040js counts the
 * cycles of every instruction it executes (CortexM0Core.cycles; WFI/WFE
 * count 1, the time spent waiting for an interrupt counts none).  One
 * correction: rp2040js also adds 8 to that count whenever the SIO hardware
 * divider starts (sio.js updateHardwareDivider), cycles that no instruction
 * spends and the board clock never sees; the pico-sdk's divide routines wait
 * for the result with instructions (four `b 1f`), which are counted already.
 * The register below leaves those 8 out, so in a stretch with no waiting it
 * equals the board clock's advance (ticks_us x 125).  This adds
 * a read-only register block at 0x40068000 (a hole in the RP2040's APB map
 * that rp2040js leaves empty), so code on the board reads it like any
 * register: machine.mem32[0x40068000].
 *
 *   0x00  CYCLES_LO   executed cycles, low 32 bits (reading it latches HI)
 *   0x04  CYCLES_HI   high bits of the value latched by the last LO read
 *   0x08  MAGIC       0x43594331 ("CYC1"): the counter is there
 *
 * The emulator (emulator/run.js, emulator/lib/board.js) is not changed: this
 * file wraps Board.prototype.powerOn from outside (node --require).
 */
const path = require('path');

const BASE_KEY = 0x40068;        // rp2040js peripheral key: address >>> 14 << 2
const MAGIC = 0x43594331;

const boardPath = path.resolve(__dirname, '..', '..', 'emulator', 'lib', 'board.js');
const { Board } = require(boardPath);

function install(mcu) {
  let hi = 0;
  let divs = 0;
  const sio = mcu.sio;
  const upd = sio.updateHardwareDivider;
  sio.updateHardwareDivider = function updateHardwareDivider(...args) {
    divs += 1;
    return upd.apply(this, args);
  };
  mcu.peripherals[BASE_KEY] = {
    readUint32(offset) {
      const c = mcu.core.cycles - 8 * divs;
      switch (offset) {
        case 0x0: hi = Math.floor(c / 4294967296) >>> 0; return c >>> 0;
        case 0x4: return hi;
        case 0x8: return MAGIC;
        default: return 0;
      }
    },
    writeUint32() {},
    writeUint32Atomic() {},
  };
}

if (!Board.prototype.__benchCycles) {
  const orig = Board.prototype.powerOn;
  Board.prototype.powerOn = function powerOn(...args) {
    const r = orig.apply(this, args);
    install(this.mcu);
    return r;
  };
  Board.prototype.__benchCycles = true;
}
