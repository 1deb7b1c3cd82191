# What a board's MicroPython has beyond the unix port, for mqtt_async.
import socket as _socket


class lwip_socket:
    """The socket module as lwIP ports have it: getaddrinfo's address is an
    (ip, port) tuple; the unix port gives a raw sockaddr instead."""

    def getaddrinfo(host, port, *a):
        out = []
        for fam, typ, proto, canon, sa in _socket.getaddrinfo(host, port, *a):
            if isinstance(sa, (bytes, bytearray)) and sa[0] == 2:      # AF_INET sockaddr_in
                sa = ("%d.%d.%d.%d" % (sa[4], sa[5], sa[6], sa[7]), (sa[2] << 8) | sa[3])
            out.append((fam, typ, proto, canon, sa))
        return out

    getaddrinfo = staticmethod(getaddrinfo)
