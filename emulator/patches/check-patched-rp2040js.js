// Checks the patches in this folder on a patched copy of rp2040js 1.4.1, without the
// harness's run-time fixes: boots firmware/RPI_PICO_MQTT.uf2, opens machine.UART(0)
// from the USB REPL and writes AT.  Without the UART patch UART() never returns.
//   cp -r emulator/node_modules/rp2040js /tmp/rp2040js && (cd /tmp/rp2040js && for p in
//     $PWD/emulator/patches/*.patch; do patch -p1 < $p; done)
//   node emulator/patches/check-patched-rp2040js.js /tmp/rp2040js
const fs = require('fs');
const path = require('path');
const ROOT = path.resolve(__dirname, '../..');
const { RP2040, USBCDC, ConsoleLogger, LogLevel } = require(path.resolve(process.argv[2]));
const { loadImage } = require(path.join(ROOT, 'emulator/lib/image'));
const mcu = new RP2040();
mcu.logger = new ConsoleLogger(LogLevel.Error, false);
const rom = fs.readFileSync(path.join(ROOT, 'build/emulator/bootrom.bin'));
const words = new Uint32Array(4096); Buffer.from(words.buffer).set(rom);
mcu.loadBootrom(words);
for (const w of loadImage(path.join(ROOT, 'firmware/RPI_PICO_MQTT.uf2'))) mcu.flash.set(w.data, w.offset);
mcu.core.reset();
const { Board } = require(path.join(ROOT, 'emulator/lib/board'));
const stubs = Board.prototype.findStubs.call({ romWords: words });
mcu.onBreak = () => { const r = mcu.core.registers; const s = stubs.get(mcu.core.PC - 2); if (!s) return; const out = s.impl([r[0], r[1], r[2], r[3]]); if (Array.isArray(out)) out.forEach((v, i) => { r[i] = v >>> 0; }); else { r[0] = out.cmp >>> 0; mcu.core.N = out.cmp < 0; mcu.core.Z = out.cmp === 0; mcu.core.C = out.cmp >= 0; mcu.core.V = false; } };
const cdc = new USBCDC(mcu.usbCtrl);
let usbOut = '', uartOut = '';
cdc.onSerialData = (b) => { usbOut += Buffer.from(b).toString(); };
mcu.uart[0].onByte = (b) => { uartOut += String.fromCharCode(b); };
let sent = false;
const queue = Buffer.from("import machine\ru = machine.UART(0, 115200)\ru.write(b'AT\\r\\n')\rprint('done', 6*7)\r");
let qi = 0;
for (let i = 0; i < 40e6; i++) {
  if (mcu.core.waiting) { const n = mcu.clock.nanosToNextAlarm; if (!mcu.clock.nextAlarm) break; mcu.clock.tick(n); } else mcu.clock.tick(mcu.core.executeInstruction() * 8);
  if (cdc.initialized && qi < queue.length && i % 1000 === 0) { if (cdc.sendSerialByte(queue[qi])) qi++; }
  if (usbOut.includes('done 42')) break;
}
const ok = uartOut === 'AT\r\n' && usbOut.includes('done 42');
console.log(JSON.stringify({ ok, uartOut, virtualMs: mcu.clock.nanos / 1e6 }));
process.exit(ok ? 0 : 1);
