import os
import stat

from conftest import read


def test_snapshot_of_a_tree_reproduces_its_audit(tree, cli, tmp_path):
    # managed 0444 files, a kernel without /sys/kernel/irq, Hyper-V known from sys/bus/vmbus alone, a vmm
    # exception from DMI, refused vCPUs from the binary MADT, DMAR-MSI in cluster mode (the FACP flags)
    for name in (
        "managed",
        "old-kernel",
        "hyperv-stub-nocpuid",
        "cloud-hypervisor-320",
        "qemu-kvm-288-8bit",
        "qemu-vtd-288",
    ):
        root = tree(name)
        snap = str(tmp_path / f"snap-{name}")
        result = cli("snapshot", snap, "--root", root)
        assert result.code == 0 and "files in" in result.out
        original = cli("audit", "--root", root, "--format", "json").json()
        copy = cli("audit", "--root", snap, "--format", "json").json()
        original.pop("root"), copy.pop("root")
        assert copy == original


def test_snapshot_keeps_modes_and_copies_only_what_is_read(tree, cli, tmp_path):
    root = tree("managed")
    snap = str(tmp_path / "snap")
    assert cli("snapshot", snap, "--root", root).code == 0
    assert stat.S_IMODE(os.stat(f"{snap}/proc/irq/40/smp_affinity_list").st_mode) == 0o444
    assert stat.S_IMODE(os.stat(f"{snap}/proc/irq/24/smp_affinity_list").st_mode) == 0o644
    assert not os.path.exists(f"{snap}/sys/kernel/irq/24/hwirq")  # never read
    assert not os.path.exists(f"{snap}/proc/irq/24/smp_affinity")  # smp_affinity_list was enough
    assert read(snap, "dev/cpu/0/cpuid").startswith("# CPUID leaves read by irqagent")


def test_snapshot_refuses_a_non_empty_directory(tree, cli, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    result = cli("snapshot", str(tmp_path / "busy"), "--root", tree("qemu-kvm-256"))
    assert result.code == 2 and "not an empty directory" in result.err


def test_snapshot_with_driver_links(tree, cli, tmp_path):
    root = tree("numa-spread")
    snap = str(tmp_path / "snap")
    assert cli("snapshot", snap, "--root", root).code == 0
    assert os.readlink(f"{snap}/sys/bus/pci/devices/0000:00:01.0/driver").endswith("/virtio-pci")
