# Scenarios that check the test rig itself.
import sys


async def whoami(p):
    import socket
    s = socket.socket()
    addr = socket.getaddrinfo(p["host"], p["port"])[0][-1]
    s.connect(addr)
    # MQTT CONNECT, clean session, keepalive 0, client id "rig"
    s.send(b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x00\x00\x03rig")
    connack = s.recv(4)
    s.close()
    return [sys.implementation.name, connack]


async def fails(p):
    assert p["x"] == 2, "deliberate failure inside the interpreter"


async def echo_params(p):
    return p
