# UART stand-ins for hosts, so the SIM800L driver runs off a board too.
#
# The driver needs only two calls from its UART, both from the MicroPython
# stream protocol that machine.UART already has:
#   readinto(buf, n) -> count > 0, or None when nothing is waiting (never blocks)
#   write(buf, n) / write(buf, off, n) -> count written
# On a board: machine.UART(1, 115200, timeout=0, rxbuf=2048) is that.
# On the MicroPython unix port a connected non-blocking socket is that too.
# CPython's sockets and ttys speak another dialect; the classes here adapt.
import errno


def tcp_uart(host, port):
    """A TCP connection to a modem simulator (or a serial-to-TCP bridge), UART-like."""
    import socket        # here, not at the top: board images (rp2) have no socket module
    s = socket.socket()
    s.connect(socket.getaddrinfo(host, port)[0][-1])
    if hasattr(s, "recv_into"):          # CPython
        return _CPythonStream(s)
    s.setblocking(False)                 # MicroPython: the socket is a stream already
    return s


class _CPythonStream:
    """CPython socket or tty fd with MicroPython stream semantics."""

    def __init__(self, sock=None, fd=None):
        import os
        self._os, self._sock, self._fd = os, sock, fd
        if sock is not None:
            import socket
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            os.set_blocking(fd, False)

    def readinto(self, buf, n=None):
        n = len(buf) if n is None else n
        try:
            if self._sock is not None:
                got = self._sock.recv_into(buf, n)
            else:
                got = self._os.readv(self._fd, [memoryview(buf)[:n]])
        except (BlockingIOError, InterruptedError):
            return None
        # A UART never reaches end of file: a vanished modem is silence.
        return got or None

    def write(self, buf, a=None, b=None):
        off, n = (0, a) if b is None else (a, b)
        mv = memoryview(buf)[off:]
        if n is not None:
            mv = mv[:n]
        done = 0
        while done < len(mv):          # a real UART's write blocks until buffered
            try:
                if self._sock is not None:
                    done += self._sock.send(mv[done:])
                else:
                    done += self._os.write(self._fd, mv[done:])
            except (BlockingIOError, InterruptedError):
                import select
                select.select([], [self._sock if self._sock is not None else self._fd], [], 1)
            except OSError as e:
                if e.errno == errno.EPIPE:
                    return done
                raise
        return done

    def close(self):
        if self._sock is not None:
            self._sock.close()
        else:
            self._os.close(self._fd)


def serial_uart(path, baud=115200):
    """A serial port or pty on CPython (/dev/ttyUSB0 with a USB-serial SIM800L), raw 8N1."""
    import os
    import termios
    import tty
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    speed = getattr(termios, "B%d" % baud)
    attrs[4] = attrs[5] = speed
    attrs[2] = (attrs[2] & ~termios.CRTSCTS) | termios.CLOCAL | termios.CREAD
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    return _CPythonStream(fd=fd)
