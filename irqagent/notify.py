"""sd_notify without libsystemd: one datagram per message to ``$NOTIFY_SOCKET``."""

from __future__ import annotations

import os
import socket

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Mapping, Optional


class Notifier:
    """Sends ``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, ``STOPPING=1``; a no-op without a socket."""

    def __init__(self, address: Optional[str]):
        self.address: Optional[str] = None
        if address:
            # Abstract socket names start with "@"; the kernel wants a leading NUL.
            self.address = "\0" + address[1:] if address.startswith("@") else address
        self.sock: Optional[socket.socket] = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Notifier":
        return cls(environ.get("NOTIFY_SOCKET"))

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines; True when delivered.  Never raises."""
        if self.address is None:
            return False
        try:
            if self.sock is None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self.sock.sendto("\n".join(assignments).encode("utf-8", "replace"), self.address)
            return True
        except OSError:
            return False

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def watchdog_interval(environ: Mapping[str, str]) -> Optional[float]:
    """Seconds between WATCHDOG=1 pings (half of ``WATCHDOG_USEC``), or None."""
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None
