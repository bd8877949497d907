"""sd_notify (systemd's sd_notify(3) protocol): datagrams to $NOTIFY_SOCKET, never an exception."""

import os
import socket

import pytest

from irqagent.notify import Notifier, watchdog_interval


@pytest.fixture
def listener(tmp_path):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    server.bind(path)
    server.settimeout(5)
    yield path, server
    server.close()


def test_a_path_socket_gets_one_datagram_per_send(listener):
    path, server = listener
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier.send("READY=1", "STATUS=3 IRQs ok")
    assert notifier.send("WATCHDOG=1")
    assert server.recv(200) == b"READY=1\nSTATUS=3 IRQs ok"
    assert server.recv(200) == b"WATCHDOG=1"
    notifier.close()
    notifier.close()  # twice is harmless


def test_a_vanished_socket_is_false_not_an_exception(listener, tmp_path):
    path, server = listener
    notifier = Notifier(path)
    assert notifier.send("READY=1")
    server.close()
    os.unlink(path)
    assert notifier.send("STOPPING=1") is False


def test_text_that_is_not_utf8_is_still_sent(listener):
    path, server = listener
    assert Notifier(path).send("STATUS=\udcff")  # a lone surrogate (from a file name, say)
    assert server.recv(200) == b"STATUS=?"


@pytest.mark.parametrize("environ", [{}, {"NOTIFY_SOCKET": ""}])
def test_without_a_socket_nothing_is_sent(environ):
    assert Notifier.from_environ(environ).send("READY=1") is False


@pytest.mark.parametrize(
    "environ, seconds",
    [
        ({"WATCHDOG_USEC": "20000000"}, 10.0),  # WatchdogSec=20: ping every 10 s
        ({"WATCHDOG_USEC": "1"}, 5e-7),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "self"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "another"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "twenty"}, None),
        ({"WATCHDOG_PID": "self"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(environ, seconds):
    pids = {"self": str(os.getpid()), "another": str(os.getpid() + 1)}
    environ = {key: pids.get(value, value) for key, value in environ.items()}
    assert watchdog_interval(environ) == seconds
