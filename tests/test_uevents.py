"""The daemon's uevent socket: pyroute2's class, without importing the whole of pyroute2."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
CPU0_UEVENT = "/sys/devices/system/cpu/cpu0/uevent"

# Parts of pyroute2 that ``pyroute2/__init__.py`` imports and the daemon never uses.
UNUSED = ("pyroute2.iproute", "pyroute2.ndb", "pyroute2.ipdb", "pyroute2.ipset", "pyroute2.nftables")


def python(code: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_only_the_uevent_module_is_imported_and_pyroute2_still_works_afterwards():
    found = python(
        "import json, sys\n"
        "from irqagent.uevents import uevent_socket_class\n"
        "cls = uevent_socket_class()\n"
        f"unused = sorted(m for m in sys.modules if m.startswith({UNUSED!r}))\n"
        "import pyroute2\n"  # the real package, for whoever needs it later in the process
        "print(json.dumps({'cls': cls.__module__ + '.' + cls.__name__, 'unused': unused,\n"
        "                  'iproute': pyroute2.IPRoute.__name__}))\n"
    )
    assert found == {"cls": "pyroute2.netlink.uevent.UeventSocket", "unused": [], "iproute": "IPRoute"}


def test_falls_back_to_the_ordinary_import():
    found = python(
        "import importlib.util, json, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'pyroute2' else real(name, *a)\n"
        "from irqagent.uevents import uevent_socket_class\n"
        "cls = uevent_socket_class()\n"
        "print(json.dumps({'cls': cls.__name__, 'whole': 'pyroute2.iproute' in sys.modules}))\n"
    )
    assert found == {"cls": "UeventSocket", "whole": True}


@pytest.mark.root  # writes "change" to this machine's /sys/devices/system/cpu/cpu0/uevent
@pytest.mark.skipif(not os.path.exists(CPU0_UEVENT), reason="no cpu0 uevent file")
def test_the_daemons_socket_receives_a_real_uevent_without_blocking():
    import select

    from irqagent.daemon import parse_uevent
    from irqagent.uevents import open_kernel_uevents

    sock = open_kernel_uevents()
    try:
        with pytest.raises(BlockingIOError):
            while True:
                sock.recv(65536)  # what other uevents queued, then: nothing, and no blocking
        with open(CPU0_UEVENT, "w") as handle:
            handle.write("change\n")  # a harmless uevent: nothing listens for cpu "change"
        events = []
        for _ in range(20):  # other uevents may come first
            if not select.select([sock], [], [], 5)[0]:
                break
            events.append(parse_uevent(sock.recv(65536)))
            if {"ACTION": "change", "SUBSYSTEM": "cpu"} in events:
                break
        assert {"ACTION": "change", "SUBSYSTEM": "cpu"} in events
    finally:
        sock.close()


def test_the_daemon_imports_pyroute2_only_to_open_its_socket_and_only_the_uevent_module():
    found = python(
        "import json, sys\n"
        "import irqagent.daemon\n"
        "before = sorted(m for m in sys.modules if m.split('.')[0] == 'pyroute2')\n"
        "from irqagent.uevents import open_kernel_uevents\n"
        "try:\n"
        "    sock = open_kernel_uevents()\n"
        "    opened = [sock.getblocking(), sock.type == 2]\n"  # non-blocking, SOCK_DGRAM (netlink)
        "    sock.close()\n"
        "except OSError as exc:\n"
        "    opened = str(exc)\n"
        f"unused = sorted(m for m in sys.modules if m.startswith({UNUSED!r}))\n"
        "print(json.dumps({'before': before, 'opened': opened, 'unused': unused}))\n"
    )
    assert found["before"] == []  # importing the daemon costs nothing of pyroute2
    assert found["unused"] == []
    if isinstance(found["opened"], str):
        pytest.skip(f"no netlink uevent socket here: {found['opened']}")
    assert found["opened"] == [False, True]
