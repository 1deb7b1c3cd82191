# network for the unix port: a station interface that is always connected,
# as on a board whose Wi-Fi came up at boot.
STA_IF = 0
AP_IF = 1
STAT_IDLE = 0
STAT_CONNECTING = 1
STAT_GOT_IP = 3


class WLAN:
    def __init__(self, interface=STA_IF):
        self._if = interface

    def active(self, *a):
        return True

    def isconnected(self):
        return True

    def connect(self, *a, **k):
        pass

    def disconnect(self):
        pass

    def status(self, *a):
        return -50 if a else STAT_GOT_IP

    def ifconfig(self, *a):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, *a, **k):
        return b"\x02\x00\x00\x00\x00\x01" if a and a[0] == "mac" else None
