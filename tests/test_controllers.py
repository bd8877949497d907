"""Controllers: chip name -> destination -> reachable CPUs, and the hypervisor exception table."""

import pytest

from irqagent.config import Config, ControllerOverride
from irqagent.controllers import build_controllers, chip_counts, classify_chip
from irqagent.hypervisors import EXCEPTIONS
from irqagent.platform import Platform


def platform(dest="8bit", source="cpuid", vmm="qemu", mode="x2apic", **changes):
    values = dict(
        vendor="kvm",
        vendor_source="cpuid",
        vmm=vmm,
        vmm_evidence="test",
        ext_dest_id=dest == "15bit",
        ext_dest_id_offered=dest == "15bit",
        source=source,
        apic_destination=dest,
        apic_mode=mode,
        mode_source="msr",
        remapped=False,
        hyperv_stub=False,
        x2apic_cluster=False,
        kernel="6.12.0",
    )
    values.update(changes)
    return Platform(**values)


def controllers(chips, plat, apic_ids, online=None, config=None):
    config = config or Config()
    online = online if online is not None else (1 << len(apic_ids)) - 1
    ids = dict(enumerate(apic_ids)) if isinstance(apic_ids, list) else apic_ids
    return build_controllers(chip_counts(chips), plat, ids, online, config)


@pytest.mark.parametrize(
    "chip, expected",
    [
        ("IO-APIC", ("8bit", "cpuid")),
        ("PCI-MSI", ("8bit", "cpuid")),
        ("PCI-MSIX-0000:00:04.0", ("8bit", "cpuid")),
        ("PCI-MSI-0000:00:1f.2", ("8bit", "cpuid")),
        ("IR-IO-APIC", ("remapped", "chip")),
        ("IR-PCI-MSIX-0000:00:02.0", ("remapped", "chip")),  # the real 6.12 VT-d capture
        ("IR-PCI-MSI", ("remapped", "chip")),  # the real 6.1 capture
        ("IOMMU-MSI", ("remapped", "chip")),  # AMD IOMMU: 32-bit destination (intcapxt)
        ("DMAR-MSI", ("8bit", "vmm")),  # QEMU's VT-d (the exception table)
        ("IR-HPET-MSI", ("none", "chip")),
        ("HPET-MSI", ("none", "chip")),
        ("XT-PIC", ("none", "chip")),
        ("VMD-MSI", ("none", "chip")),  # drivers/pci/controller/vmd.c: no irq_set_affinity
        ("xen-percpu", ("none", "chip")),
        ("xen-pirq", ("any", "chip")),
        ("xen-dyn", ("any", "chip")),
        ("xen-dyn-lateeoi", ("any", "chip")),
        ("Hyper-V PCIe MSI", ("any", "chip")),
        ("HV-PCI-MSIX-0000:00:02.0", ("any", "chip")),
        ("AMD-Vi", ("8bit", "default")),  # an action name, not a chip: unknown
    ],
)
def test_every_known_chip(chip, expected):
    assert classify_chip(chip, platform())[:2] == expected


def test_dmar_msi_of_real_vt_d_reaches_every_cpu():
    # __irq_msi_compose_msg(..., dmar=true) puts destination bits 8-31 in the high address word,
    # which real VT-d honours: only QEMU's emulation drops them.
    assert classify_chip("DMAR-MSI", platform(vmm=None))[:2] == ("remapped", "chip")


def test_ir_io_apic_is_hyperv_ir_only_with_the_stub():
    assert classify_chip("IR-IO-APIC", platform(vmm="hyper-v", hyperv_stub=True))[0] == "hyperv-ir"
    assert classify_chip("IR-IO-APIC", platform(vmm="hyper-v", remapped=True))[0] == "remapped"


def test_unknown_chip_gets_the_platform_destination_and_a_detail():
    destination, source, detail, _ = classify_chip("FANCY-MSI", platform(dest="15bit"))
    assert (destination, source) == ("15bit", "default") and "FANCY-MSI" in detail


# -- reach ---------------------------------------------------------------------------------------


def test_apic_id_255_is_reachable_in_x2apic_mode():
    # apic_id_valid: only IDs above x2apic_max_apicid (255) are invalid; QEMU/KVM deliver 255 as unicast.
    result = controllers(["IO-APIC"], platform(), list(range(256)))["IO-APIC"]
    assert (result.reachable, result.unreachable, result.reachable_apic_text) == ((1 << 256) - 1, 0, "0-255")


def test_apic_id_255_with_the_broadcast_quirk():
    result = controllers(["IO-APIC"], platform(broadcast_255=True), list(range(256)))["IO-APIC"]
    assert (result.reachable, result.unreachable) == ((1 << 255) - 1, 1 << 255)


def test_xapic_names_0_to_254():
    # default_apic_id_valid: apicid < 255.
    result = controllers(["IO-APIC"], platform(mode="xapic"), list(range(256)))["IO-APIC"]
    assert result.unreachable == 1 << 255


def test_15bit_reaches_32767_not_beyond():
    result = controllers(["PCI-MSI"], platform(dest="15bit"), {0: 0, 1: 32767, 2: 32768})["PCI-MSI"]
    assert (result.reachable, result.unreachable) == (0b011, 0b100)


def test_hyperv_stub_limits_cpu_numbers_and_apic_ids():
    # hyperv-iommu.c: ioapic_max_cpumask holds CPUs whose number <= 255 and APIC ID < 256.
    ids = {0: 0, 1: 300, 255: 255, 256: 2}
    result = controllers(["IR-IO-APIC"], platform(vmm="hyper-v", hyperv_stub=True), ids, online=0)["IR-IO-APIC"]
    assert result.reachable == (1 << 0) | (1 << 255)
    assert result.unreachable == (1 << 1) | (1 << 256)


def test_offline_cpus_with_known_apic_ids_are_covered_but_never_usable():
    # CPUs 256-287 refused (offline): reported unreachable, and no mask may name them.
    ids = list(range(288))
    result = controllers(["IO-APIC"], platform(), ids, online=(1 << 256) - 1)["IO-APIC"]
    assert result.unreachable == ((1 << 288) - 1) & ~((1 << 256) - 1)
    assert result.usable == (1 << 256) - 1 and result.online_unreachable == 0


def test_config_override_with_explicit_apic_ids():
    config = Config(controllers=(ControllerOverride("PCI-MSIX-*", "8bit", reachable_apic_ids=0b1010),))
    result = controllers(["PCI-MSIX-0000:00:01.0"], platform(), [0, 1, 2, 3], config=config)
    only = result["PCI-MSIX-0000:00:01.0"]
    assert (only.source, only.reachable, only.reachable_apic_text) == ("config", 0b1010, "1,3")


def test_config_override_beats_the_exception_table():
    config = Config(controllers=(ControllerOverride("DMAR-MSI", "remapped"),))
    only = controllers(["DMAR-MSI"], platform(x2apic_cluster=True), list(range(16)), config=config)["DMAR-MSI"]
    assert (only.destination, only.source, only.reachable) == ("remapped", "config", (1 << 16) - 1)


def test_none_controller_reaches_nothing_and_is_not_settable():
    only = controllers(["XT-PIC"], platform(), [0, 1])["XT-PIC"]
    assert (only.reachable, only.unreachable, only.settable) == (0, 0, False)


# -- the exception table ---------------------------------------------------------------------------


def test_every_exception_row_names_its_source():
    for row in EXCEPTIONS:
        assert row.source and ("/" in row.source or ".c" in row.source or ".rs" in row.source)


def test_cloud_hypervisor_io_apic_is_8bit_while_its_msis_are_15bit():
    # devices/src/ioapic.rs update_entry: the destination comes from RTE bits 63-56 only.
    plat = platform(dest="15bit", source="inferred", vmm="cloud-hypervisor")
    result = controllers(["IO-APIC", "PCI-MSIX-0000:00:01.0"], plat, list(range(320)))
    io_apic, msix = result["IO-APIC"], result["PCI-MSIX-0000:00:01.0"]
    assert (io_apic.destination, io_apic.source, io_apic.reachable) == ("8bit", "vmm", (1 << 256) - 1)
    assert "Cloud Hypervisor" in io_apic.detail and "ioapic.rs" in io_apic.detail
    assert (msix.destination, msix.source, msix.unreachable) == ("15bit", "inferred", 0)
    # APIC ID & 0xff: 256-319 land on CPUs 0-63 (APIC ID = CPU number here): a true alias, stated once.
    assert [line for _, line in io_apic.aliases] == [
        "APIC IDs 256-511 (CPUs 256-319) become APIC ID & 0xff under cloud-hypervisor: delivered to CPUs 0-63 instead"
    ]
    assert msix.aliases == ()


def test_cloud_hypervisor_io_apic_alias_is_lost_when_nobody_owns_the_low_id():
    plat = platform(dest="15bit", vmm="cloud-hypervisor")
    io_apic = controllers(["IO-APIC"], plat, {0: 0, 1: 300})["IO-APIC"]
    assert "lost for CPU 1" in io_apic.aliases[0][1]


@pytest.mark.parametrize("cluster, reachable", [(True, 0xFF), (False, (1 << 256) - 1)])
def test_qemu_dmar_msi(cluster, reachable):
    # hw/i386/intel_iommu.c vtd_generate_interrupt reads only the low address register (bits 0-7 of the
    # destination). Cluster mode: logical ID (apic >> 4) << 16 | 1 << (apic & 15) fits for APIC IDs 0-7 only.
    plat = platform(vmm="qemu", remapped=True, x2apic_cluster=cluster)
    dmar = controllers(["DMAR-MSI"], plat, list(range(288)))["DMAR-MSI"]
    assert (dmar.destination, dmar.source, dmar.reachable) == ("8bit", "vmm", reachable)
    assert ("APIC IDs 0-7 in x2APIC cluster mode" if cluster else "APIC IDs 0-255 in physical mode") in dmar.detail
    assert dmar.aliases == ()  # QEMU does not truncate to a CPU: no alias story


def test_no_alias_story_on_a_consistent_guest():
    # A KVM guest never onlines a CPU its 8-bit IO-APIC cannot name: nothing to alias.
    result = controllers(["IO-APIC"], platform(), list(range(300)), online=(1 << 256) - 1)["IO-APIC"]
    assert result.aliases == ()


def test_platform_default_marks_the_kernels_own_io_apic_and_msi():
    plat = platform(vmm="cloud-hypervisor", dest="15bit")
    result = controllers(["IO-APIC", "PCI-MSIX-0000:00:01.0", "DMAR-MSI", "IR-PCI-MSI"], plat, [0, 1])
    assert {chip for chip, c in result.items() if c.platform_default} == {"PCI-MSIX-0000:00:01.0"}


# -- added for the mutation run (tools/mutation.py): exact details, texts, counts and aliases --------


@pytest.mark.parametrize(
    "chip, plat, expected",
    [
        ("", platform(), ("8bit", "default", "no chip name: assuming the platform's APIC destination")),
        ("HPET-MSI", platform(), ("none", "chip", "")),
        ("IR-PCI-MSI", platform(), ("remapped", "chip", "")),
        ("xen-pirq", platform(), ("any", "chip", "")),
        ("PCI-MSI", platform(source="inferred"), ("8bit", "inferred", "")),
        (
            "IR-IO-APIC",
            platform(vmm="hyper-v", hyperv_stub=True),
            ("hyperv-ir", "chip", "Hyper-V's IOMMU stub (hyperv-iommu): no remapping, CPUs 0-255 with APIC IDs 0-255"),
        ),
        (
            "IOMMU-MSI",
            platform(),
            ("remapped", "chip", "the AMD IOMMU's own interrupt has a 32-bit destination (intcapxt, 5.11+)"),
        ),
        (
            "DMAR-MSI",
            platform(vmm=None),
            ("remapped", "chip", "the VT-d unit's own interrupt has a 32-bit destination (__irq_msi_compose_msg)"),
        ),
    ],
)
def test_classify_chip_details(chip, plat, expected):
    assert classify_chip(chip, plat)[:3] == expected


def test_reach_texts_and_any_reaches_every_cpu():
    result = controllers(["XT-PIC", "IR-PCI-MSI", "xen-pirq", "IO-APIC"], platform(), list(range(300)))
    assert [result[chip].reachable_apic_text for chip in ("XT-PIC", "IR-PCI-MSI", "xen-pirq", "IO-APIC")] == [
        "",
        "all",
        "all",
        "0-255",
    ]
    assert result["xen-pirq"].reachable == result["xen-pirq"].usable == (1 << 300) - 1


def test_usable_is_reachable_and_online():
    # APIC IDs 0-299, CPUs 0-279 online: an 8-bit controller may be written with CPUs 0-255 only.
    io_apic = controllers(["IO-APIC"], platform(), list(range(300)), online=(1 << 280) - 1)["IO-APIC"]
    assert io_apic.usable == (1 << 256) - 1
    assert io_apic.online_unreachable == ((1 << 280) - 1) & ~((1 << 256) - 1)


def test_explicit_apic_ids_do_not_reach_ids_past_the_list():
    # reachable_apic_ids "0-3": the CPU with APIC ID 4 (just past the list) is unreachable.
    config = Config(controllers=(ControllerOverride("PCI-MSI", "8bit", reachable_apic_ids=0b1111),))
    only = controllers(["PCI-MSI"], platform(), [0, 1, 2, 3, 4, 5], config=config)["PCI-MSI"]
    assert (only.reachable, only.unreachable) == (0b001111, 0b110000)


def test_irq_counts_per_controller():
    assert chip_counts(["IO-APIC", "PCI-MSI", "IO-APIC", "IO-APIC"]) == {"IO-APIC": 3, "PCI-MSI": 1}
    result = controllers(["IO-APIC", "PCI-MSI", "IO-APIC"], platform(), [0, 1])
    assert (result["IO-APIC"].irqs, result["PCI-MSI"].irqs) == (2, 1)


def test_alias_lines_count_only_online_owners_of_the_low_apic_id():
    # Cloud Hypervisor's IO-APIC keeps APIC ID & 0xff. CPU 2 (APIC 256) lands on APIC 0 = CPU 0 (online);
    # CPU 3 (APIC 257) would land on APIC 1 = CPU 1, which is offline: lost. CPU 4 (APIC 512) lands on CPU 0.
    plat = platform(dest="15bit", vmm="cloud-hypervisor")
    ids = {0: 0, 1: 1, 2: 256, 3: 257, 4: 512}
    io_apic = controllers(["IO-APIC"], plat, ids, online=0b11101)["IO-APIC"]
    assert [line for _, line in io_apic.aliases] == [
        "APIC IDs 256-511 (CPUs 2-3) become APIC ID & 0xff under cloud-hypervisor: delivered to CPU 0 instead; "
        "lost for CPU 3 (no CPU has the low APIC ID)",
        "APIC IDs 512-767 (CPU 4) become APIC ID & 0xff under cloud-hypervisor: delivered to CPU 0 instead",
    ]
    assert [mask for mask, _ in io_apic.aliases] == [0b01100, 0b10000]


def test_controllers_are_immutable():
    from irqagent.records import FrozenError

    only = controllers(["IO-APIC"], platform(), [0, 1])["IO-APIC"]
    with pytest.raises(FrozenError):
        only.irqs = 5  # type: ignore[misc]
