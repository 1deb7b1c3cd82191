#!/usr/bin/env node
'use strict';
/*
 * Boot an RP2040 image on the emulated board and bridge its ports.
 *
 *   node emulator/run.js --image firmware/RPI_PICO_MQTT.uf2 --flash build/emulator/flash.bin \
 *        --usb listen:0 --uart0 listen:0 --deadline 120
 *
 * --image FILE        .uf2, .elf or .bin written into flash before power-on (only the
 *                     blocks it holds, as flashing does: the filesystem stays)
 * --flash FILE        the board's flash, kept across runs (created if missing)
 * --flash-size BYTES  how much of the flash the file holds (default 2 MB, the Pico's)
 * --rom FILE          boot ROM (default build/emulator/bootrom.bin, `make rom`)
 * --usb MODE          USB CDC (the REPL): stdio | listen:PORT | none   (default stdio)
 * --uart0/--uart1 MODE  listen:PORT | connect:HOST:PORT | none       (default none)
 * --deadline SEC      stop after SEC seconds of wall time (default: run until stopped)
 * --fast              do not pace the board clock to the wall clock
 * --stats             print which ROM entries were called, at exit
 * --verbose           print rp2040js warnings
 *
 * listen:0 picks a free port.  Unless --usb is stdio, one JSON line per event
 * goes to stdout: {"event":"listening",...}, {"event":"stop","reason":...}.
 * Exit status: 0 when stopped by the deadline, a signal or the user, 1 when the
 * board stopped by itself with an error (the reason is printed).
 */
const fs = require('fs');
const net = require('net');
const path = require('path');
const { Board } = require('./lib/board');
const { loadImage } = require('./lib/image');

const ROOT = path.resolve(__dirname, '..');

function parseArgs(argv) {
  const o = { usb: 'stdio', uart0: 'none', uart1: 'none', rom: path.join(ROOT, 'build/emulator/bootrom.bin') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) die(`${a} needs a value`); return argv[++i]; };
    switch (a) {
      case '--image': o.image = val(); break;
      case '--flash': o.flash = val(); break;
      case '--flash-size': o.flashSize = parseInt(val(), 0); break;
      case '--rom': o.rom = val(); break;
      case '--usb': o.usb = val(); break;
      case '--uart0': o.uart0 = val(); break;
      case '--uart1': o.uart1 = val(); break;
      case '--deadline': o.deadline = parseFloat(val()); break;
      case '--fast': o.fast = true; break;
      case '--stats': o.stats = true; break;
      case '--verbose': o.verbose = true; break;
      case '-h': case '--help':
        process.stdout.write(fs.readFileSync(__filename, 'utf8').split('\n').filter((l) => l.startsWith(' *')).map((l) => l.slice(3)).join('\n') + '\n');
        process.exit(0);
        break;
      default: die(`unknown argument ${a} (see --help)`);
    }
  }
  if (!o.image && !o.flash) die('give --image FILE and/or --flash FILE (see --help)');
  return o;
}

function die(msg) {
  process.stderr.write(`emulator: ${msg}\n`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
const stdio = opts.usb === 'stdio';
function event(obj) {
  if (stdio) process.stderr.write(`emulator: ${Object.entries(obj).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' ')}\r\n`);
  else process.stdout.write(JSON.stringify(obj) + '\n');
}

if (!fs.existsSync(opts.rom)) die(`no boot ROM at ${opts.rom}: run \`make rom\``);
let image = null;
if (opts.image) {
  try { image = loadImage(opts.image); } catch (e) { die(`${opts.image}: ${e.message}`); }
}
const board = new Board({
  rom: fs.readFileSync(opts.rom), flashFile: opts.flash, flashSize: opts.flashSize,
  image, realtime: !opts.fast, verbose: opts.verbose,
});

// ------------------------------------------------------------- bridges

/** A byte stream between the board and one TCP peer at a time. */
class Bridge {
  constructor(name, mode, toBoard) {
    this.name = name;
    this.toBoard = toBoard;
    this.sock = null;
    this.backlog = [];
    this.backlogBytes = 0;
    this.mode = mode;
  }
  open() {
    const m = /^listen:(\d+)$/.exec(this.mode);
    const c = /^connect:([^:]+):(\d+)$/.exec(this.mode);
    if (m) {
      return new Promise((resolve, reject) => {
        this.server = net.createServer((s) => this.attach(s));
        this.server.on('error', reject);
        this.server.listen(parseInt(m[1], 10), '127.0.0.1', () => resolve(this.server.address().port));
      });
    }
    if (c) {
      const tryConnect = () => {
        const s = net.connect(parseInt(c[2], 10), c[1]);
        s.once('connect', () => this.attach(s));
        s.once('error', () => { if (!this.sock && !stopping) setTimeout(tryConnect, 200); });
      };
      tryConnect();
      return Promise.resolve(`${c[1]}:${c[2]}`);
    }
    die(`--${this.name} ${this.mode}: expected listen:PORT or connect:HOST:PORT`);
    return null;
  }
  attach(s) {
    if (this.sock) this.sock.destroy();
    this.sock = s;
    s.setNoDelay(true);
    s.on('data', (d) => this.toBoard(d));
    s.on('close', () => { if (this.sock === s) this.sock = null; });
    s.on('error', () => {});
    for (const b of this.backlog) s.write(b);
    this.backlog = [];
    this.backlogBytes = 0;
    event({ event: 'connected', port: this.name });
  }
  write(bytes) {
    if (this.sock) { this.sock.write(bytes); return; }
    if (this.backlogBytes > 1 << 20) return;       // nobody listening for a long time: drop
    this.backlog.push(Buffer.from(bytes));
    this.backlogBytes += bytes.length;
  }
  close() {
    if (this.sock) this.sock.end();
    if (this.server) this.server.close();
  }
}

let stopping = false;
const bridges = {};
const uartOut = [[], []];

async function main() {
  const listening = { event: 'listening' };
  if (opts.usb !== 'none') {
    if (stdio) {
      board.on('usb', (buf) => process.stdout.write(buf));
      if (process.stdin.isTTY) process.stdin.setRawMode(true);
      process.stdin.on('data', (d) => {
        if (d.includes(0x1d)) { finish('user (Ctrl-])', 'user'); return; }
        board.usbWrite(d);
      });
      process.stderr.write('emulator: board powered on; Ctrl-] quits\r\n');
    } else {
      bridges.usb = new Bridge('usb', opts.usb, (d) => board.usbWrite(d));
      board.on('usb', (buf) => bridges.usb.write(buf));
      listening.usb = await bridges.usb.open();
    }
  }
  for (const n of [0, 1]) {
    const mode = opts[`uart${n}`];
    if (mode === 'none') continue;
    const b = new Bridge(`uart${n}`, mode, (d) => board.uartWrite(n, d));
    bridges[`uart${n}`] = b;
    listening[`uart${n}`] = await b.open();
  }
  board.on('uart', (n, byte) => {
    uartOut[n].push(byte);
    if (uartOut[n].length === 1) setImmediate(() => {
      const bytes = Buffer.from(uartOut[n]);
      uartOut[n] = [];
      if (bridges[`uart${n}`]) bridges[`uart${n}`].write(bytes);
    });
  });
  board.on('reset', (n) => event({ event: 'reset', count: n }));
  board.on('stop', (reason, kind) => { if (!stopping) finish(reason, kind); });
  event(listening);
  if (opts.deadline) setTimeout(() => finish(`deadline of ${opts.deadline} s reached`, 'deadline'), opts.deadline * 1000).unref();
  process.on('SIGINT', () => finish('SIGINT', 'signal'));
  process.on('SIGTERM', () => finish('SIGTERM', 'signal'));
  board.start();
}

function finish(reason, kind) {
  if (stopping) return;
  stopping = true;
  board.stop(reason, kind);
  board.close();
  if (stdio && process.stdin.isTTY) process.stdin.setRawMode(false);
  event({ event: 'stop', reason, kind, board_seconds: +(board.mcu.clock.nanos / 1e9).toFixed(3) });
  if (opts.stats) event({ event: 'stats', rom_calls: board.stats, warnings: Object.fromEntries(board.warnings) });
  for (const b of Object.values(bridges)) b.close();
  const code = ['deadline', 'signal', 'user'].includes(kind) ? 0 : 1;
  // Let sockets flush, then leave.
  setTimeout(() => process.exit(code), 50);
}

main().catch((e) => die(e.stack || e.message));
