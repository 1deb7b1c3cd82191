'use strict';
/*
 * An emulated Raspberry Pi Pico: rp2040js with our own boot ROM, the ROM's
 * float/double entries served here, the flash kept in a file (so stopping and
 * starting again is a power cycle), the UART and USB fixes, and a run loop
 * that never lets the board's clock run ahead of the wall clock (the board
 * talks to real programs: a modem simulator, mosquitto, mpremote).
 */
const fs = require('fs');
const { EventEmitter } = require('events');
const { RP2040, USBCDC } = require('rp2040js');
const abi = require('./rom-abi');
const fp = require('./fp');
const { fixUart, fixUsbDeviceSof, CdcHost } = require('./fixes');

const MB = 1024 * 1024;
const CYCLE_NANOS = 1e9 / 125e6;

class Board extends EventEmitter {
  /**
   * opts.rom: Buffer with the ROM; opts.flashFile: path (created if missing);
   * opts.flashSize: bytes kept in the file (default 2 MB, the Pico's flash);
   * opts.image: [{offset, data}] written into flash before power-on;
   * opts.realtime: pace the board clock to the wall clock (default true);
   * opts.verbose: print rp2040js warnings.
   */
  constructor(opts) {
    super();
    const given = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined));
    this.opts = Object.assign({ flashSize: 2 * MB, realtime: true, verbose: false }, given);
    if (this.opts.rom.length > abi.ROM_SIZE) throw new Error('ROM is larger than 16 KB');
    this.romWords = new Uint32Array(abi.ROM_SIZE / 4);
    Buffer.from(this.romWords.buffer).set(this.opts.rom);
    this.stubs = this.findStubs();
    this.flash = new Uint8Array(16 * MB).fill(0xff);
    this.fd = null;
    if (this.opts.flashFile) {
      if (fs.existsSync(this.opts.flashFile)) {
        const saved = fs.readFileSync(this.opts.flashFile);
        this.flash.set(saved.subarray(0, Math.min(saved.length, this.flash.length)));
      }
      this.fd = fs.openSync(this.opts.flashFile, fs.existsSync(this.opts.flashFile) ? 'r+' : 'w+');
    }
    for (const w of this.opts.image || []) this.flash.set(w.data, w.offset);
    if (this.fd !== null) this.persist(0, this.opts.flashSize);
    this.stats = {};              // ROM entry -> calls
    this.warnings = new Map();
    this.stopped = true;
    this.stopReason = null;
    this.uartTx = [[], []];
    this.uartRxQueue = [[], []];
    this.watchdogScratch = null;
    this.resets = 0;
    this.powerOn();
  }

  powerOn() {
    const mcu = new RP2040();
    this.mcu = mcu;
    mcu.logger = {
      debug() {}, info() {},
      warn: (name, msg) => this.warn(`[${name}] ${msg}`),
      error: (name, msg) => { throw new Error(`rp2040js [${name}] ${msg}`); },
    };
    mcu.loadBootrom(this.romWords);          // resets the chip, which erases rp2040js's flash array...
    mcu.flash.set(this.flash);               // ...so the flash goes in afterwards
    this.flash = mcu.flash;
    mcu.core.reset();                        // SP and PC from the ROM's vectors
    if (this.watchdogScratch) {
      for (let i = 0; i < 8; i++) this.watchdog.scratchData[i] = this.watchdogScratch.scratch[i];
      this.watchdog.reason = this.watchdogScratch.reason;
    }
    mcu.onBreak = (imm) => this.onBreak(imm);
    fixUart(mcu.uart[0]);
    mcu.uart.forEach((uart, n) => {
      uart.onByte = (b) => this.emit('uart', n, b);
    });
    const watchdog = this.watchdog;
    if (watchdog) watchdog.onWatchdogTrigger = () => this.watchdogReset();
    fixUsbDeviceSof(mcu.usbCtrl, mcu.clock);
    this.usb = new CdcHost(mcu.usbCtrl, USBCDC);
    this.usb.onData = (buf) => this.emit('usb', buf);
    this.usb.onConnected = () => this.emit('usb-connected');
    if (this.pendingUsb) { for (const b of this.pendingUsb) this.usb.write(b); this.pendingUsb = null; }
    this.wallStart = null;
  }

  /** Map ROM address -> {table, name, impl} of every soft float/double table entry. */
  findStubs() {
    const rom = Buffer.from(this.romWords.buffer);
    const stubs = new Map();
    let t = rom.readUInt16LE(0x16);
    for (; rom.readUInt16LE(t); t += 4) {
      const c = abi.codeName(rom.readUInt16LE(t));
      if (c !== 'SF' && c !== 'SD') continue;
      const base = rom.readUInt16LE(t + 2);
      const names = c === 'SF' ? abi.FLOAT_ENTRIES : abi.DOUBLE_ENTRIES;
      names.forEach((name, i) => {
        const addr = rom.readUInt32LE(base + 4 * i) & ~1;
        const table = c === 'SF' ? 'float' : 'double';
        stubs.set(addr, { table, name, offset: 4 * i, impl: (table === 'float' ? fp.F : fp.D)[name] });
      });
    }
    return stubs;
  }

  get watchdog() {
    return this.mcu.peripherals[0x40058];
  }

  warn(msg) {
    const n = (this.warnings.get(msg) || 0) + 1;
    this.warnings.set(msg, n);
    if (this.opts.verbose && n === 1) process.stderr.write(`emulator: ${msg}\n`);
  }

  /** A watchdog reset: a new chip, same flash, watchdog scratch registers kept. */
  watchdogReset() {
    const wd = this.watchdog;
    this.watchdogScratch = { scratch: Array.from(wd.scratchData), reason: wd.reason };
    this.resets += 1;
    this.emit('reset', this.resets);
    this.resetRequested = true;
  }

  persist(offset, count) {
    if (this.fd === null) return;
    const end = Math.min(offset + count, this.opts.flashSize);
    if (end > offset) fs.writeSync(this.fd, this.flash, offset, end - offset, offset);
  }

  // ---------------------------------------------------------------- ROM calls

  onBreak(imm) {
    const core = this.mcu.core;
    const pc = (core.PC - 2) >>> 0;
    const r = core.registers;
    if (this.trapAddr !== undefined && pc === this.trapAddr) {
      this.trapped = true;
      this.stop('returned');
      return;
    }
    if (pc >= abi.ROM_SIZE) {
      this.stop(`the firmware executed BKPT/UDF #${imm} at 0x${pc.toString(16)} (a panic or a fault handler); ` +
                `lr=0x${r[14].toString(16)} r0=0x${r[0].toString(16)}`);
      return;
    }
    const stub = this.stubs.get(pc);
    if (stub) {
      const { table, name, impl } = stub;
      if (!impl) {
        this.stop(`ROM entry ${name} (soft ${table} table offset 0x${stub.offset.toString(16)}) is not implemented`);
        return;
      }
      this.stats[name] = (this.stats[name] || 0) + 1;
      const out = impl([r[0], r[1], r[2], r[3]]);
      if (Array.isArray(out)) {
        out.forEach((v, i) => { r[i] = v >>> 0; });
      } else {
        r[0] = out.cmp >>> 0;
        core.N = out.cmp < 0;
        core.Z = out.cmp === 0;
        core.C = out.cmp >= 0;
        core.V = false;
      }
      return;
    }
    switch (imm) {
      case abi.BK_FLASH_WRITTEN:
        this.stats.flash_writes = (this.stats.flash_writes || 0) + 1;
        this.persist(r[0], r[1]);
        this.emit('flash', r[0], r[1]);
        return;
      case abi.BK_RESET_USB_BOOT:
        this.stop(`reset_to_usb_boot(0x${r[0].toString(16)}, 0x${r[1].toString(16)}) called: ` +
                  'USB BOOTSEL mode is not emulated, the board stops (machine.bootloader())', 'bootsel');
        return;
      case abi.BK_WAIT_FOR_VECTOR:
        this.stop('wait_for_vector called: core 1 is not emulated by rp2040js');
        return;
      case abi.BK_LOOKUP_MISS: {
        const table = r[0] === this.romHalf(0x14) ? 'function' : r[0] === this.romHalf(0x16) ? 'data' : `0x${r[0].toString(16)}`;
        this.stop(`ROM lookup of '${abi.codeName(r[1])}' (0x${r[1].toString(16)}) in the ${table} table: ` +
                  'this ROM has no such entry');
        return;
      }
      case abi.BK_NO_BOOT2:
        this.stop(`no valid boot2 at the start of flash (CRC 0x${r[0].toString(16)}, expected 0x${r[1].toString(16)}): ` +
                  'the real chip would enter USB BOOTSEL mode; is an image loaded?', 'no-image');
        return;
      case abi.BK_FAULT:
        this.stop(`exception ${r[0]} (${r[0] === 2 ? 'NMI' : 'HardFault'}) taken through the ROM's vector table ` +
                  '(before the firmware set VTOR)');
        return;
      case 0:
        this.stop(`debug_trampoline_end reached (r0=0x${r[0].toString(16)})`, 'debug-trampoline');
        return;
      default:
        this.stop(`unknown ROM breakpoint #${imm} at 0x${pc.toString(16)}`);
    }
  }

  romHalf(addr) { return (this.romWords[addr >> 2] >>> ((addr & 2) * 8)) & 0xffff; }

  // ---------------------------------------------------------------- running

  stop(reason, kind = 'error') {
    if (this.stopReason === null) {
      this.stopReason = reason;
      this.stopKind = kind;
    }
    this.stopped = true;
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    this.emit('stop', reason, kind);
  }

  /** Start running; returns at once, the board runs on the event loop. */
  start() {
    this.stopped = false;
    this.stopReason = null;
    this.schedule(0);
  }

  schedule(ms) {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = ms > 0 ? setTimeout(() => this.slice(), ms) : setImmediate(() => this.slice());
    this.sleeping = ms > 0;
  }

  /** Something arrived from outside (USB, UART): wake a sleeping board. */
  kick() {
    if (this.sleeping && !this.stopped) this.schedule(0);
  }

  wallNanos() {
    const now = process.hrtime.bigint();
    if (this.wallStart === null) this.wallStart = now - BigInt(Math.round(this.mcu.clock.nanos));
    return Number(now - this.wallStart);
  }

  slice() {
    this.timer = null;
    this.sleeping = false;
    const { mcu } = this;
    const { core, clock } = mcu;
    const realtime = this.opts.realtime;
    const wall = realtime ? this.wallNanos() : Infinity;
    let sleepMs = 0;
    try {
      for (let i = 0; i < 100000 && !this.stopped; i++) {
        if (core.waiting) {
          if (!clock.nextAlarm) {                               // nothing scheduled: wait for I/O
            if (wall !== Infinity && wall > clock.nanos) clock.tick(wall - clock.nanos);
            sleepMs = 20;
            break;
          }
          const due = clock.nanos + clock.nanosToNextAlarm;
          if (due > wall) {
            if (wall > clock.nanos) clock.tick(wall - clock.nanos);
            sleepMs = Math.max(1, Math.min(50, (due - wall) / 1e6));
            break;
          }
          clock.tick(clock.nanosToNextAlarm);
        } else {
          const cycles = core.executeInstruction();
          clock.tick(cycles * CYCLE_NANOS);
        }
        if (this.resetRequested) break;
      }
    } catch (e) {
      this.stop(`emulator error at pc=0x${(core.PC >>> 0).toString(16)}: ${e.message}`);
      return;
    }
    this.feedUarts();
    if (this.resetRequested) {
      this.resetRequested = false;
      this.powerOn();
      sleepMs = 0;
    }
    if (!this.stopped) this.schedule(sleepMs);
  }

  // ---------------------------------------------------------------- I/O

  usbWrite(bytes) {
    if (!this.usb) { (this.pendingUsb = this.pendingUsb || []).push(Buffer.from(bytes)); return; }
    this.usb.write(bytes);
    this.kick();
  }

  uartWrite(n, bytes) {
    for (const b of bytes) this.uartRxQueue[n].push(b);
    this.feedUarts();
    this.kick();
  }

  /** Move queued bytes into the UART RX FIFOs while they have room (32 deep). */
  feedUarts() {
    for (let n = 0; n < 2; n++) {
      const q = this.uartRxQueue[n];
      const uart = this.mcu.uart[n];
      let i = 0;
      while (i < q.length && !uart.rxFIFO.full) uart.feedByte(q[i++]);
      if (i) q.splice(0, i);
    }
  }

  /** Run until the CPU returns to a trap address (for direct ROM calls, no pacing). */
  call(addr, args = [], { maxInstructions = 50_000_000, r7 } = {}) {
    const { core } = this.mcu;
    const trap = 0x20000000;
    this.mcu.writeUint16(trap, 0xbefe);                   // bkpt #0xfe
    this.trapAddr = trap;
    this.trapped = false;
    for (let i = 0; i < 4; i++) core.registers[i] = (args[i] || 0) >>> 0;
    if (r7 !== undefined) core.registers[7] = r7 >>> 0;
    core.SP = 0x20040000;
    core.LR = trap | 1;
    core.PC = addr & ~1;
    this.stopped = false;
    this.stopReason = null;
    let n = 0;
    while (!this.stopped && n < maxInstructions) {
      const cycles = core.executeInstruction();
      this.mcu.clock.tick(cycles * CYCLE_NANOS);
      n++;
    }
    if (!this.trapped) {
      throw new Error(this.stopReason || `no return after ${maxInstructions} instructions (pc=0x${core.PC.toString(16)})`);
    }
    return { r: Array.from(core.registers.slice(0, 4)), N: core.N, Z: core.Z, C: core.C, V: core.V, instructions: n };
  }

  close() {
    if (this.fd !== null) { fs.fsyncSync(this.fd); fs.closeSync(this.fd); this.fd = null; }
  }
}

module.exports = { Board };
