"""A real mosquitto broker for tests: own config, free loopback port, log kept.

Nothing here fakes MQTT: tests talk to Debian's mosquitto.  Each Broker
writes its config into a folder of its own; `restart()` keeps the port and
(with persistence on) the broker's session store, so tests can check what
survives a broker restart.
"""
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, folder, persistence=False, extra_config="", users=None):
        self.exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(self.exe):
            raise RuntimeError("mosquitto not found: run `.ci/run --deps-only` "
                               "or `apt-get install mosquitto`")
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self.port = free_port()
        self.log_path = os.path.join(folder, "mosquitto.log")
        self.conf_path = os.path.join(folder, "mosquitto.conf")
        lines = [
            "listener %d 127.0.0.1" % self.port,
            "allow_anonymous %s" % ("false" if users else "true"),
            "log_dest file " + self.log_path,
            "log_type all",
            "connection_messages true",
            # run as whoever runs the tests, so the log and store are writable
            "user " + getpass.getuser(),
        ]
        if persistence:
            lines += ["persistence true",
                      "persistence_location " + folder + "/",
                      "autosave_interval 1"]
        if users:
            # mosquitto_passwd hashes the passwords into mosquitto's own format
            pw = os.path.join(folder, "passwd")
            open(pw, "w").close()
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", pw, user, password], check=True)
            lines.append("password_file " + pw)
        self.config = "\n".join(lines) + "\n" + extra_config
        with open(self.conf_path, "w") as f:
            f.write(self.config)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([self.exe, "-c", self.conf_path],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited at start:\n" +
                                   self.proc.stderr.read().decode() + self.log())
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not listen on %d:\n%s" % (self.port, self.log()))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_seconds=0.0):
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return "(no mosquitto log)"
