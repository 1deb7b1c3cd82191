"""A scripted, hostile TLS 1.2 server for tests/test_tls_attacks.py.

CPython's ssl.SSLObject over MemoryBIOs on a raw TCP socket, so a script
controls every byte that goes on the wire: finish the handshake or stop in
the middle of it, send application records, raw garbage, a truncated
record, a close_notify, or nothing at all.

    srv = TLSAttackServer(cert, key, script).start()   # script(conn), per connection
    ... client connects to srv.port ...
    srv.stop(); srv.errors, srv.conns

Every connection runs in its own thread; every wait is bounded.
"""
import socket
import ssl
import threading
import time


class Conn:
    def __init__(self, raw, ctx):
        self.raw = raw
        self.raw.settimeout(0.05)
        self.inb, self.outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inb, self.outb, server_side=True)
        self.received = bytearray()      # application bytes from the client
        self.closed_by_peer = False
        self.alive = True

    # ---- raw bytes ---------------------------------------------------------
    def _feed(self, timeout):
        """One raw read into the incoming BIO; False on timeout, EOF sets closed_by_peer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = self.raw.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                self.closed_by_peer = True
                return False
            if not data:
                self.closed_by_peer = True
                self.inb.write_eof()
                return False
            self.inb.write(data)
            return True
        return False

    def flush(self, limit=None):
        """What the TLS object wants sent: all of it, or its first `limit` bytes."""
        data = self.outb.read()
        if limit is not None:
            data = data[:limit]
        if data:
            self.send_raw(data)
        return len(data)

    def send_raw(self, data):
        try:
            self.raw.settimeout(5)
            self.raw.sendall(data)
        finally:
            self.raw.settimeout(0.05)

    # ---- TLS ---------------------------------------------------------------
    def handshake(self, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.obj.do_handshake()
                self.flush()
                return True
            except ssl.SSLWantReadError:
                self.flush()
                if time.monotonic() > deadline or self.closed_by_peer:
                    return False
                self._feed(0.2)

    def first_flight(self, timeout=10):
        """Read the ClientHello and make the server's first flight
        (ServerHello, Certificate, ServerKeyExchange, ServerHelloDone);
        returns its bytes, unsent."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._feed(0.2)
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            if self.outb.pending:
                return self.outb.read()
        raise AssertionError("no ClientHello")

    def send_app(self, data):
        self.obj.write(data)
        self.flush()

    def recv_app(self, n_at_least=1, timeout=5):
        """Application bytes until at least n_at_least came (or timeout)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < n_at_least and time.monotonic() < deadline:
            try:
                self.received += self.obj.read(65536)
                continue
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self.closed_by_peer = True
                break
            if self.closed_by_peer:
                break
            self._feed(0.1)
        return bytes(self.received)

    def mqtt_connect(self):
        """Handshake, read the CONNECT, answer CONNACK."""
        assert self.handshake(), "handshake failed"
        self.recv_app(2)
        self.send_app(b"\x20\x02\x00\x00")

    def close_notify(self):
        try:
            self.obj.unwrap()
        except ssl.SSLError:
            pass
        self.flush()

    def stall(self, seconds):
        """Say nothing, keep reading (and dropping) what comes."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.closed_by_peer:
            self._feed(min(0.1, max(0.0, end - time.monotonic())))

    def close(self):
        self.alive = False
        try:
            self.raw.close()
        except OSError:
            pass


class TLSAttackServer:
    def __init__(self, certfile, keyfile, script, lifetime=30):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = self.ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.load_cert_chain(certfile, keyfile)
        self.script = script
        self.lifetime = lifetime
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.errors = []
        self._stop = False
        self._threads = []

    def start(self):
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def _accept(self):
        end = time.monotonic() + self.lifetime
        while not self._stop and time.monotonic() < end:
            try:
                raw, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c = Conn(raw, self.ctx)
            self.conns.append(c)
            t = threading.Thread(target=self._run, args=(c,), daemon=True)
            t.start()
            self._threads.append(t)

    def _run(self, c):
        try:
            self.script(c)
        except Exception as e:       # recorded: the test decides
            self.errors.append(repr(e))
        finally:
            # keep the socket open until the client goes or the server stops
            end = time.monotonic() + self.lifetime
            while not self._stop and not c.closed_by_peer and time.monotonic() < end and c.alive:
                c._feed(0.1)
            c.close()

    def stop(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        for c in self.conns:
            c.close()
