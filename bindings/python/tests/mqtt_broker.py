"""A mosquitto of the MQTT tests' own: a free loopback port, a temporary
configuration and persistence file, started and stopped by the test
(docs/MQTT.md). Also used by examples/python/mqtt_demo.py.

Without a mosquitto binary the tests fail (never skip): `require_mosquitto`
says how to install it.
"""

import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import List, Optional

INSTALL_HINT = "mosquitto is missing; install it with: sudo apt-get install mosquitto"
START_TIMEOUT = 10.0


def find_mosquitto() -> Optional[str]:
    """The mosquitto binary: $MOSQUITTO, on PATH, or in /usr/sbin (Debian's
    place, often not on a user's PATH)."""
    for candidate in (os.environ.get("MOSQUITTO"), shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_mosquitto() -> str:
    """The binary, or a test failure naming the package to install."""
    binary = find_mosquitto()
    if binary is None:
        import pytest

        pytest.fail(INSTALL_HINT, pytrace=False)
    return binary


def free_port() -> int:
    """A free loopback port below Linux's ephemeral range (32768 and up), so
    that no outgoing connection takes it while the broker is restarted."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000..32000")


class Mosquitto:
    """One broker on 127.0.0.1:port with persistence in ``directory``.
    ``stop`` is a clean stop (SIGTERM: mosquitto writes its persistence
    file), ``kill`` a SIGKILL (only what it saved before survives)."""

    def __init__(
        self,
        directory: Path,
        binary: Optional[str] = None,
        autosave_interval: int = 1800,
        autosave_on_changes: bool = False,
        extra: str = "",
        anonymous: bool = True,
    ) -> None:
        self.binary = binary or require_mosquitto()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = self.directory / "mosquitto.conf"
        self.log = self.directory / "mosquitto.log"
        self.db = self.directory / "mosquitto.db"
        user = pwd.getpwuid(os.getuid()).pw_name
        lines: List[str] = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if anonymous else 'false'}",
            "persistence true",
            f"persistence_location {self.directory}/",
            "persistence_file mosquitto.db",
            f"autosave_interval {autosave_interval}",
            f"autosave_on_changes {'true' if autosave_on_changes else 'false'}",
            # Queue everything for an absent subscriber (the default keeps
            # 1000 per client and drops the rest).
            "max_queued_messages 0",
            "max_queued_bytes 0",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            # Stay the user we are (as root, mosquitto would switch to the
            # user "mosquitto", who cannot write the persistence file here).
            f"user {user}",
        ]
        self.config.write_text("\n".join(lines) + "\n" + extra)
        self.proc: Optional["subprocess.Popen[bytes]"] = None
        self.starts = 0

    def start(self) -> None:
        assert self.proc is None, "the broker is running"
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.directory / "mosquitto.stderr", "ab"),
        )
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen within {START_TIMEOUT} s: {self.tail()}")
                time.sleep(0.02)  # polling the port: the only sign of readiness

    def stop(self) -> None:
        """SIGTERM and wait: mosquitto saves its persistence file and exits."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: what it has not saved is gone."""
        self._end(signal.SIGKILL)

    def _end(self, sig: int) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError("mosquitto did not stop within 30 s")

    @property
    def running(self) -> bool:
        return self.proc is not None

    def tail(self, chars: int = 2000) -> str:
        text = ""
        for path in (self.log, self.directory / "mosquitto.stderr"):
            if path.exists():
                text += path.read_text(errors="replace")[-chars:]
        return text

    def __enter__(self) -> "Mosquitto":
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
