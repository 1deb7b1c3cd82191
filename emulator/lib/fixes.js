'use strict';
/*
 * Corrections to rp2040js 1.4.1 models, applied by the harness at run time.
 * patches/ holds the same fixes as changes to rp2040js's source, for upstream.
 */

const UARTDR = 0x0, UARTDMACR = 0x48;
const UARTTXINTR = 1 << 5;

/*
 * UART TX interrupt (rp2040js src/peripherals/uart.ts, checkInterrupts has
 * "TODO We should actually implement a proper FIFO for TX").  rp2040js sets
 * the TX interrupt on *every* status update, so after the firmware clears it
 * through UARTICR it is raised again at once and the IRQ never drops:
 * MicroPython's `machine.UART(...)` never returns (the core sits in
 * uart_irq_handler).  The PL011 (RP2040 datasheet, UART chapter) raises the
 * TX interrupt when the transmit FIFO level falls to its trigger level, i.e.
 * on a transition, not while it stays empty: "if the interrupt and the UART
 * are enabled before any data is written to the transmit FIFO the interrupt
 * is not set".  rp2040js sends a written byte at once, so the FIFO drains on
 * every write to UARTDR: raise TXINTR there, and let UARTICR clear it until
 * the next write.  Also accept UARTDMACR (0x48), which rp2040js logs as an
 * unimplemented register although MicroPython writes it at init.
 */
function fixUart(uart) {
  const proto = Object.getPrototypeOf(uart);
  if (proto.__mqttUartFixed) return;
  const origWrite = proto.writeUint32;
  const origRead = proto.readUint32;
  proto.checkInterrupts = function checkInterrupts() {
    this.rp2040.setInterrupt(this.irq, !!(this.interruptStatus & this.interruptMask));
  };
  proto.writeUint32 = function writeUint32(offset, value) {
    if (offset === UARTDMACR) {
      this.dmaCtrlRegister = value & 0x7;
      return;
    }
    origWrite.call(this, offset, value);
    if (offset === UARTDR) {
      this.interruptStatus |= UARTTXINTR;
      this.checkInterrupts();
    }
  };
  proto.readUint32 = function readUint32(offset) {
    if (offset === UARTDMACR) return this.dmaCtrlRegister || 0;
    return origRead.call(this, offset);
  };
  proto.__mqttUartFixed = true;
}

/*
 * USB CDC host side.  rp2040js's USBCDC answers every OUT buffer the device
 * arms with whatever its 512-byte FIFO holds at that moment, an empty packet
 * when it holds nothing; the device re-arms, so an idle board spins through a
 * USB interrupt every 10 us and a host that writes more than 512 bytes at
 * once loses the rest.  A real host NAKs until it has data.  This keeps the
 * device's read pending until the host has bytes, and queues host bytes
 * without a limit (flow control through the pending reads).
 */
class CdcHost {
  constructor(usbCtrl, USBCDC) {
    this.cdc = new USBCDC(usbCtrl);
    this.usb = usbCtrl;
    this.queue = [];          // Buffers from the host
    this.queued = 0;
    this.pending = null;      // {endpoint, size}
    this.onData = null;       // device -> host bytes (Uint8Array)
    this.onConnected = null;
    const cdcRead = usbCtrl.onEndpointRead;
    usbCtrl.onEndpointRead = (endpoint, size) => {
      if (endpoint === this.cdc.outEndpoint) {
        this.pending = { endpoint, size };
        this.pump();
      } else {
        cdcRead(endpoint, size);
      }
    };
    this.cdc.onSerialData = (buffer) => { if (this.onData) this.onData(buffer); };
    this.cdc.onDeviceConnected = () => { this.connected = true; if (this.onConnected) this.onConnected(); this.pump(); };
  }

  write(bytes) {
    if (!bytes.length) return;
    this.queue.push(Buffer.from(bytes));
    this.queued += bytes.length;
    this.pump();
  }

  pump() {
    if (!this.pending || !this.queued) return;
    const { endpoint, size } = this.pending;
    const n = Math.min(size, this.queued);
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const head = this.queue[0];
      const take = Math.min(head.length, n - filled);
      out.set(head.subarray(0, take), filled);
      filled += take;
      if (take === head.length) this.queue.shift(); else this.queue[0] = head.subarray(take);
    }
    this.queued -= n;
    this.pending = null;
    this.usb.endpointReadDone(endpoint, out);
  }
}

/*
 * USB start-of-frame in device mode.  A full-speed host sends a SOF packet
 * every millisecond; the RP2040 raises INTS.DEV_SOF for each one (while
 * INTE.DEV_SOF is set) and reading SOF_RD clears it (datasheet, USB
 * chapter).  rp2040js generates SOFs only in host mode, so device firmware
 * that waits for frames never sees one: MicroPython flushes its CDC output
 * 16 SOFs after the host raises DTR, so text printed before the host
 * connected (a main.py started by a reset) stayed unsent until the next
 * print.  This raises DEV_SOF every millisecond of board time while the
 * firmware has it enabled.
 */
const USB_SOF_RD = 0x48, USB_INTE = 0x90, INTR_DEV_SOF = 1 << 17;

function fixUsbDeviceSof(usb, clock) {
  const origWrite = usb.writeUint32;
  const origRead = usb.readUint32;
  let running = false;
  const alarm = clock.createAlarm(() => {
    running = false;
    if (usb.hostMode || !(usb.intEnable & INTR_DEV_SOF)) return;
    usb.sofFrameNumber = (usb.sofFrameNumber + 1) & 0x7ff;
    usb.intRaw |= INTR_DEV_SOF;
    usb.checkInterrupts();
    running = true;
    alarm.schedule(1e6);
  });
  usb.writeUint32 = function writeUint32(offset, value) {
    origWrite.call(this, offset, value);
    if (offset === USB_INTE && !this.hostMode && (this.intEnable & INTR_DEV_SOF) && !running) {
      running = true;
      alarm.schedule(1e6);
    }
  };
  usb.readUint32 = function readUint32(offset) {
    const v = origRead.call(this, offset);
    if (offset === USB_SOF_RD && !this.hostMode && (this.intRaw & INTR_DEV_SOF)) {
      this.intRaw &= ~INTR_DEV_SOF;
      this.checkInterrupts();
    }
    return v;
  };
}

module.exports = { fixUart, fixUsbDeviceSof, CdcHost };
