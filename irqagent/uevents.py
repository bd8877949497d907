"""The kernel's uevent socket: pyroute2's, without the rest of pyroute2.

The daemon uses one class, ``pyroute2.netlink.uevent.UeventSocket`` (the same path in
pyroute2 0.7.x — Debian 12's python3-pyroute2 0.7.2 — and 0.9.x), to open and bind the
socket, and then reads the socket itself (``open_kernel_uevents``).  But importing any
submodule first runs ``pyroute2/__init__.py``, which loads the whole library (IPRoute,
NDB, IPDB, conntrack, nftables, psutil...): about 110 ms, against 30-45 ms for the uevent
module and what it needs (``benchmarks/startup.py``, pyroute2 0.7.2 and 0.9.7).
So the submodule is imported under a bare ``pyroute2`` package whose ``__init__`` is not
run — the submodules need only their own imports — and the bare package is dropped from
``sys.modules`` afterwards, so a later ``import pyroute2`` gets the real one.  Should a
future layout break that, the ordinary import is the fallback.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PACKAGE = "pyroute2"
RCVBUF = 4 << 20  # kernel socket buffer asked for: fewer overflows in a storm
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # root may exceed net.core.rmem_max


def open_kernel_uevents() -> socket.socket:
    """The kernel's uevent socket (NETLINK_KOBJECT_UEVENT, group 1), opened and bound by
    pyroute2 and then handed over as a plain non-blocking socket: pyroute2 keeps no queue
    of its own that could grow, and an overflow is an ENOBUFS from ``recv()``.  Raises
    whatever pyroute2 or the kernel raise (no netlink in a container, no pyroute2)."""
    opened = uevent_socket_class()()
    try:
        opened.bind()
        sock = socket.socket(fileno=os.dup(opened.fileno()))
    finally:
        opened.close()
    sock.setblocking(False)
    for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, RCVBUF)
            break
        except OSError:
            continue
    return sock


def uevent_socket_class() -> Any:
    """``UeventSocket``, imported as cheaply as the installed pyroute2 allows."""
    if PACKAGE not in sys.modules:
        try:
            return _without_package_init()
        except Exception:  # noqa: BLE001 - another layout: pay for the whole package below
            pass
    from pyroute2.netlink.uevent import UeventSocket

    return UeventSocket


def _without_package_init() -> Any:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"{PACKAGE} is not an installed package")
    sys.modules[PACKAGE] = importlib.util.module_from_spec(spec)  # __path__ set, __init__ not run
    try:
        from pyroute2.netlink.uevent import UeventSocket
    except BaseException:
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]  # nothing half-imported is left for the fallback
        raise
    del sys.modules[PACKAGE]
    return UeventSocket
