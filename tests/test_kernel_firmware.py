"""Reading the firmware and APIC facts: MADT (binary), IA32_APIC_BASE, DMI, VMBus, FADT; and the
daemon's rule that the MADT is read again only after a CPU hot-plug."""

import io
import os
import shutil

import pytest

from irqagent.config import Config
from irqagent.daemon import Daemon, Log, Settings
from irqagent.journal import StateLock
from irqagent.kernel import KernelTree
from irqagent.notify import Notifier
from irqagent.snapshot import take_snapshot

MADT = "sys/firmware/acpi/tables/APIC"


def test_firmware_facts_of_a_qemu_tree(tree):
    facts = KernelTree(tree("qemu-vtd-288")).collect()
    files = facts.platform_files
    assert len(files.madt.cpus) == 288 and files.madt.oem_id == "BOCHS"
    assert files.acpi_tables == frozenset({"DMAR"}) and files.fadt_flags == 0x000084A5
    assert files.dmi["sys_vendor"] == "QEMU" and files.vmbus is False
    assert facts.apic_base == 0xFEE00D00


def test_msr_text_form_and_its_errors(tree):
    root = tree("managed")
    with open(f"{root}/dev/cpu/0/msr", "w") as handle:
        handle.write("0x1b zz\n")
    value, note = KernelTree(root).read_apic_base(0)
    assert value is None and "line 1" in note
    os.remove(f"{root}/dev/cpu/0/msr")
    value, note = KernelTree(root).read_apic_base(0)
    assert value is None and "modprobe msr" in note


@pytest.mark.skipif(not os.access("/dev/cpu/0/msr", os.R_OK), reason="no readable /dev/cpu/0/msr (msr module)")
def test_msr_device_of_this_machine():
    value, note = KernelTree("/").read_apic_base(0)
    assert note == "" and value & (1 << 11)  # the local APIC is enabled


def test_unreadable_madt_is_a_note(tree):
    root = tree("refused-61-kvm")
    os.remove(f"{root}/{MADT}")
    os.mkdir(f"{root}/{MADT}")
    files = KernelTree(root).read_platform_files()
    assert files.madt is None and "not a regular file" in files.madt_note


def test_the_madt_is_read_once_per_tree_and_kept_when_given(tree):
    root = tree("refused-61-kvm")
    first = KernelTree(root)
    first.collect()
    assert MADT in first.accessed
    second = KernelTree(root)
    second.platform_files = first.platform_files
    second.collect()
    assert MADT not in second.accessed


def test_snapshot_copies_the_madt_byte_for_byte_and_the_dmi(tree, tmp_path):
    root = tree("hyperv-stub-cpuid")
    dest = str(tmp_path / "snap")
    take_snapshot(root, dest)
    with open(f"{root}/{MADT}", "rb") as a, open(f"{dest}/{MADT}", "rb") as b:
        assert a.read() == b.read()
    assert open(f"{dest}/sys/class/dmi/id/sys_vendor").read() == "Microsoft Corporation\n"
    assert os.path.isdir(f"{dest}/sys/bus/vmbus")
    assert open(f"{dest}/dev/cpu/0/msr").read().splitlines()[-1] == "0x1b 0x00000000fee00d00"


def test_snapshot_keeps_the_boot_id_of_a_real_capture(real_guest, tmp_path):
    root = real_guest("R2")  # captured with proc/sys/kernel/random/boot_id
    dest = str(tmp_path / "snap")
    take_snapshot(root, dest)
    boot_id = "proc/sys/kernel/random/boot_id"
    assert open(f"{dest}/{boot_id}").read() == open(f"{root}/{boot_id}").read()
    assert len(open(f"{dest}/{boot_id}").read().strip()) == 36


def uevent(action, subsystem):
    """A kernel uevent datagram: ``ACTION@DEVPATH`` then ``KEY=VALUE`` fields, NUL-separated."""
    return f"{action}@/devices/x\0ACTION={action}\0SUBSYSTEM={subsystem}\0".encode()


class FakeUevents:
    """Datagrams as the daemon's uevent socket returns them, batch by batch (one batch per drain)."""

    def __init__(self, batches):
        self.batches = [list(batch) if isinstance(batch, list) else [batch] for batch in batches]

    def recv(self, size):
        if not self.batches or not self.batches[0]:
            if self.batches:
                self.batches.pop(0)
            raise BlockingIOError()
        item = self.batches[0].pop(0)
        if isinstance(item, Exception):
            raise item
        return item


@pytest.fixture
def daemon(tree, tmp_path):
    root = tree("refused-61-kvm")
    state = str(tmp_path / "state")
    settings = Settings(root, state, None, None, None, uevents=False)
    with StateLock(state) as locked:
        yield Daemon(settings, Config(), Log(io.StringIO(), journald=False), Notifier(None), {}, locked)


def test_daemon_rereads_the_madt_only_after_a_cpu_uevent(daemon):
    daemon.run_pass("start")
    kept = daemon.state.platform_files
    assert kept is not None and kept.madt is not None
    daemon.uevents = FakeUevents(
        [
            [uevent("add", "pci"), uevent("change", "net")],
            [uevent("online", "cpu")],
            [OSError(105, "No buffer space available")],
        ]
    )
    assert daemon.drain_uevents() == (2, False) and daemon.state.platform_files is kept
    daemon.run_pass("uevent")
    assert daemon.state.platform_files is kept  # the same object: not read again
    assert daemon.drain_uevents() == (1, False) and daemon.state.platform_files is None
    daemon.run_pass("uevent")
    assert daemon.state.platform_files is not None and daemon.state.platform_files is not kept
    daemon.state.platform_files = kept
    assert daemon.drain_uevents() == (0, True)  # events lost: a hot-plug may be among them
    assert daemon.state.platform_files is None


def test_daemon_logs_the_refusal_once(daemon):
    for _ in range(3):
        daemon.run_pass("rescan")
    logged = daemon.log.stream.getvalue()
    assert logged.count("REFUSED VCPUS: 32 vCPUs refused") == 1
    assert "CPUs 256-287, APIC IDs 0x100-0x11f" in logged


def test_daemon_logs_again_when_the_verdict_changes(daemon):
    daemon.run_pass("start")
    madt = f"{daemon.settings.root}/{MADT}"
    shutil.copy(madt, madt + ".bak")
    os.remove(madt)
    daemon.state.platform_files = None
    daemon.run_pass("uevent")
    assert "present CPUs offline for an unknown reason" in daemon.log.stream.getvalue()
