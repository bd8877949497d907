"""The reader/writer: what it reads from a root, how, and how it writes."""

import errno
import os
import shutil

import pytest

from irqagent.errors import InputError
from irqagent.kernel import KernelTree

from conftest import read, write


def by_irq(facts):
    return {irq.irq: irq for irq in facts.irqs}


def test_live_fixture_facts(tree):
    facts = KernelTree(tree("live-kvm-2cpu")).collect()
    irqs = by_irq(facts)
    assert facts.kernel == "6.18.44-fc-v782" and facts.chip_source == "sysfs"
    assert facts.topology.apic_ids == {0: 0, 1: 1}
    assert (irqs[26].chip, irqs[26].name, irqs[26].device) == ("IO-APIC", "ttyS0", None)
    assert (irqs[34].chip, irqs[34].device) == ("PCI-MSIX-0000:00:05.0", "0000:00:05.0")
    assert irqs[36].writable is False and irqs[34].writable is True
    assert facts.cpuid is not None and facts.cpuid_cpu == 0


def test_old_kernel_chips_from_proc_interrupts_and_msi_links(tree):
    facts = KernelTree(tree("old-kernel")).collect()
    irqs = by_irq(facts)
    assert facts.chip_source == "interrupts"
    assert (irqs[4].chip, irqs[4].name) == ("IO-APIC", "ttyS0")
    assert (irqs[24].chip, irqs[24].device) == ("PCI-MSI", "0000:00:01.0")
    assert facts.cpuid is None and "modprobe cpuid" in facts.cpuid_note


def test_hex_only_affinity_is_read_and_written_as_hex(tree, cli):
    root = tree("cloud-hypervisor-320")  # its IO-APIC reaches APIC IDs 0-255: IRQ 4 on 0-319 is rewritten
    os.remove(os.path.join(root, "proc/irq/4/smp_affinity_list"))  # very old kernels
    irq = by_irq(KernelTree(root).collect())[4]
    assert irq.affinity_file == "smp_affinity" and irq.affinity_text == ",".join(["ffffffff"] * 10)
    doc = cli("apply", "--root", root, "--format", "json").json()
    row = next(r for r in doc["irqs"] if r["irq"] == 4)
    assert (row["status"], row["target"]) == ("changed", "0-255")
    # 320 possible CPUs: ten 32-bit words, the highest first; CPUs 256-319 cleared
    assert read(root, "proc/irq/4/smp_affinity") == "00000000,00000000," + ",".join(["ffffffff"] * 8)


def test_numa_nodes_and_drivers_only_when_asked(tree):
    root = tree("numa-spread")
    plain = KernelTree(root).collect()
    assert plain.numa_nodes == {} and all(irq.node is None and irq.driver is None for irq in plain.irqs)
    full = KernelTree(root).collect(want_node=True, want_driver=True)
    assert full.numa_nodes == {0: 0x00FF, 1: 0xFF00}
    irqs = by_irq(full)
    assert (irqs[25].node, irqs[25].driver) == (0, "virtio-pci")
    assert (irqs[33].node, irqs[33].driver) == (1, "nvme")


def test_vanished_and_unreadable_irq_directories(tree):
    root = tree("cloud-hypervisor-320")
    tree_ = KernelTree(root)
    shutil.rmtree(os.path.join(root, "proc/irq/25"))
    os.makedirs(os.path.join(root, "proc/irq/25"))  # the directory came back empty
    assert "neither smp_affinity_list nor smp_affinity" in by_irq(tree_.collect())[25].read_error
    facts = tree_._read_irq(999, True, False, {})  # listed, then gone before it was read
    assert facts.vanished


def test_accessed_lists_exactly_the_files_read(tree):
    root = tree("cloud-hypervisor-320")
    reader = KernelTree(root)
    reader.collect()
    assert "proc/cpuinfo" in reader.accessed and "proc/irq/24/smp_affinity_list" in reader.accessed
    assert "sys/kernel/irq/24/chip_name" in reader.accessed
    assert "proc/irq/24/smp_affinity" not in reader.accessed and "sys/kernel/irq/24/hwirq" not in reader.accessed


def test_required_files(tree):
    root = tree("qemu-kvm-256")
    os.remove(os.path.join(root, "proc/cpuinfo"))
    with pytest.raises(InputError, match="cannot read .*proc/cpuinfo"):
        KernelTree(root).collect()


def test_writes_to_a_file_tree_replace_the_file_whole_and_keep_its_mode(tree):
    root = tree("managed")
    reader = KernelTree(root)
    path = os.path.join(root, "proc/irq/24/smp_affinity_list")
    inode = os.stat(path).st_ino
    reader.write_affinity(24, "0-7")
    assert read(root, "proc/irq/24/smp_affinity_list") == "0-7"
    assert os.stat(path).st_ino != inode and oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert not any(name.endswith(".irqagent-new") for name in os.listdir(os.path.dirname(path)))
    with pytest.raises(FileNotFoundError):
        reader.write_affinity(12345, "0")


def test_file_tree_writes_are_durable_and_a_failed_one_changes_nothing(tree, monkeypatch):
    """The same policy as the journal's: the temp file is fsynced before the rename, the directory
    after it; a write that fails half-way leaves the old mask and no temp file."""
    root = tree("managed")
    directory = os.path.join(root, "proc/irq/24")
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.path.isdir(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    KernelTree(root).write_affinity(24, "0-3")
    assert synced == [False, True] and read(root, "proc/irq/24/smp_affinity_list") == "0-3"

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as caught:
        KernelTree(root).write_affinity(24, "0-7")
    assert caught.value.errno == errno.ENOSPC
    assert read(root, "proc/irq/24/smp_affinity_list") == "0-3"
    assert not any(name.endswith(".irqagent-new") for name in os.listdir(directory))


def test_empty_file_is_written_in_place(tree):
    root = tree("qemu-kvm-256")
    write(root, "proc/irq/24/smp_affinity_list", "")  # like procfs: size 0
    KernelTree(root).write_affinity(24, "0-2")
    assert read(root, "proc/irq/24/smp_affinity_list") == "0-2"


def test_affinity_texts_for_the_periodic_check(tree):
    root = tree("qemu-kvm-256")
    texts = KernelTree(root).affinity_texts()
    assert texts["24"] == "0-255\n" and texts["default"] == ",".join(["ffffffff"] * 8) + "\n"
    assert set(texts) == {"1", "4", "8", "9", "12", "24", "25", "26", "default"}


def test_long_multi_chunk_file_is_read_whole(tree):
    root = tree("qemu-kvm-256")
    write(root, "proc/sys/kernel/osrelease", "6.1.0-" + "x" * 700000 + " end\n")  # 1 MiB at most
    assert KernelTree(root).collect().kernel.endswith(" end")
    write(root, "proc/cmdline", "x" * 60000 + " end\n")  # 64 KiB at most
    assert KernelTree(root).collect().cmdline.endswith(" end")
