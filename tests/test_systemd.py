"""The shipped unit files: valid for systemd, hardened, and able to write /proc/irq."""

import configparser
import os
import shutil
import stat
import subprocess
import sys

import pytest

from conftest import REPO

UNITS = ("irqagent.service", "irqagent-apply.service")


def unit(name):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    with open(os.path.join(REPO, "systemd", name)) as handle:
        parser.read_string(handle.read())
    return parser


@pytest.mark.parametrize("name", UNITS)
def test_hardening_keeps_proc_writable(name):
    service = unit(name)["Service"]
    assert "ProtectKernelTunables" not in service  # would make /proc/irq read-only
    assert service["NoNewPrivileges"] == "yes" and service["ProtectHome"] == "yes"
    assert service["PrivateTmp"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["CapabilityBoundingSet"] == ""
    assert service["StateDirectory"] == "irqagent"


def test_daemon_unit_is_notify_with_netlink():
    service = unit("irqagent.service")["Service"]
    assert service["Type"] == "notify" and "WatchdogSec" in service
    assert "AF_NETLINK" in service["RestrictAddressFamilies"]
    assert service["ExecStart"].endswith("irqagent run")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path):
    # verify checks that ExecStart= exists: point it at a wrapper around this interpreter.
    wrapper = tmp_path / "irqagent"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m irqagent "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    paths = []
    for name in UNITS:
        with open(os.path.join(REPO, "systemd", name)) as handle:
            text = handle.read().replace("/usr/local/bin/irqagent", str(wrapper))
        path = tmp_path / name
        path.write_text(text)
        paths.append(str(path))
    result = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", paths[0]], capture_output=True, text=True, timeout=60
    )
    if security.returncode == 0:
        exposure = float(security.stdout.split("Overall exposure level for irqagent.service:")[1].split()[0])
        assert exposure <= 2.5
