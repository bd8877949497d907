"""The platform: the kernel's APIC mode and limit, and the evidence order for 15-bit destinations.

Each rule names the kernel code it follows (arch/x86/kernel/apic/apic.c unless said otherwise).
CPUID leaves are literal register values (see test_cpuid.py for their sources).
"""

import pytest

from irqagent.config import Config
from irqagent.devtools.madtgen import qemu_madt
from irqagent.madt import parse_madt
from irqagent.platform import decide_platform, parse_kernel_version
from irqagent.topology import offline_cpus

from conftest import make_facts

KVM_SIG = (0x4B4D564B, 0x564B4D56, 0x0000004D)
KVM_NO_EXT = {(0x40000000, 0): (0x40000001, *KVM_SIG), (0x40000001, 0): (0x01007EFB, 0, 0, 0)}
KVM_EXT = {(0x40000000, 0): (0x40000001, *KVM_SIG), (0x40000001, 0): (0x0100FEFB, 0, 0, 0)}
BHYVE_EXT = {(0x40000000, 0): (0x40000001, 0x76796862, 0x68622065, 0x20657679), (0x40000001, 0): (1, 0, 0, 0)}
TCG = {(0x40000000, 0): (0x40000001, 0x54474354, 0x43544743, 0x47435447)}
X2APIC_BASE = 0xFEE00D00  # IA32_APIC_BASE: enable (bit 11), EXTD (bit 10), BSP (bit 8)
XAPIC_BASE = 0xFEE00900


@pytest.mark.parametrize(
    "release, expected",
    [("6.1.0-18-amd64", (6, 1)), ("5.11.0", (5, 11)), ("4.14.355", (4, 14)), ("", None), ("weird", None), (None, None)],
)
def test_kernel_version(release, expected):
    assert parse_kernel_version(release) == expected


def decide(cpus=4, chips=("IO-APIC",), config=None, **facts):
    config = config or Config()
    facts = make_facts(cpus=cpus, **facts)
    offline = offline_cpus(facts.topology, facts.platform_files.madt)
    return decide_platform(facts, config, chips, offline)


# -- the kernel's APIC mode -------------------------------------------------------------------


@pytest.mark.parametrize("base, mode", [(X2APIC_BASE, "x2apic"), (XAPIC_BASE, "xapic")])
def test_mode_from_ia32_apic_base(base, mode):
    platform = decide(apic_base=base)
    assert (platform.apic_mode, platform.mode_source) == (mode, "msr")


def test_the_cpu_flag_alone_never_says_x2apic():
    # A real 6.12 guest whose cpuinfo had the x2apic flag logged "x2apic disabled" and ran xAPIC.
    platform = decide(x2apic_capable=True)
    assert (platform.apic_mode, platform.mode_source, platform.limit) == (None, None, None)
    assert any("cannot be told" in note for note in platform.notes)


def test_mode_inferred_from_an_online_apic_id_above_254():
    platform = decide(cpus=256, cpuid=KVM_NO_EXT)
    assert (platform.apic_mode, platform.mode_source) == ("x2apic", "inferred")


def test_mode_inferred_from_remapping_or_its_absence():
    assert decide(chips=("IR-IO-APIC",)).apic_mode == "x2apic"
    assert decide(x2apic_capable=False).apic_mode == "xapic"
    assert decide(cmdline="ro nox2apic").apic_mode == "xapic"


@pytest.mark.parametrize(
    "base, ext, broadcast, limit",
    [(XAPIC_BASE, False, False, 254), (X2APIC_BASE, False, False, 255), (X2APIC_BASE, False, True, 254)],
)
def test_limit(base, ext, broadcast, limit):
    config = Config(apic_id_255="broadcast" if broadcast else "unicast")
    assert decide(apic_base=base, cpuid=KVM_EXT if ext else KVM_NO_EXT, config=config).limit == limit


def test_limit_15bit():
    platform = decide(apic_base=X2APIC_BASE, cpuid=KVM_EXT)
    assert (platform.apic_destination, platform.limit, platform.online_limit) == ("15bit", 32767, 32767)


# -- evidence order: inferred > cpuid > default ---------------------------------------------------


def test_an_online_apic_id_above_255_proves_15bit_and_outranks_cpuid():
    platform = decide(cpus=257, cpuid=KVM_NO_EXT, apic_base=X2APIC_BASE)
    assert (platform.apic_destination, platform.source, platform.ext_dest_id) == ("15bit", "inferred", True)
    assert platform.ext_dest_id_offered is False
    assert any("cannot decode" in note for note in platform.notes)


def test_apic_id_255_online_is_still_8bit():
    # x2apic_set_max_apicid(255): 255 is within the 8-bit limit, so it proves nothing.
    platform = decide(cpus=256, cpuid=KVM_NO_EXT, apic_base=X2APIC_BASE)
    assert (platform.apic_destination, platform.source, platform.limit) == ("8bit", "cpuid", 255)


def test_a_vendor_backport_on_5_10_is_inferred():
    platform = decide(cpus=384, kernel="5.10.223-212.873.amzn2.x86_64", cpuid=KVM_EXT)
    assert (platform.apic_destination, platform.source) == ("15bit", "inferred")
    assert any("backport" in note for note in platform.notes)


@pytest.mark.parametrize("kernel, dest, source", [("5.11.0", "15bit", "cpuid"), ("5.10.0", "8bit", "default")])
def test_cpuid_needs_kernel_5_11(kernel, dest, source):
    # kvm.c kvm_msi_ext_dest_id arrived in 5.11: a 5.10 kernel ignores the bit.
    platform = decide(kernel=kernel, cpuid=KVM_EXT, apic_base=X2APIC_BASE)
    assert (platform.apic_destination, platform.source) == (dest, source)


def test_cpuid_offer_is_unused_when_the_kernel_runs_xapic():
    platform = decide(cpuid=KVM_EXT, apic_base=XAPIC_BASE)
    assert (platform.apic_destination, platform.ext_dest_id_offered) == ("8bit", True)
    assert any("runs xAPIC" in note for note in platform.notes)


@pytest.mark.parametrize("kernel, dest", [("6.17.9", "8bit"), ("6.18.0", "15bit")])
def test_bhyve_leaf_needs_a_kernel_with_bhyve_support(kernel, dest):
    assert decide(kernel=kernel, cpuid=BHYVE_EXT, apic_base=X2APIC_BASE).apic_destination == dest


def test_refused_apic_ids_above_255_contradict_the_cpuid_offer():
    # The kernel refused vCPUs with APIC IDs 256-287 although CPUID offers 15 bits: it does not use them.
    madt = parse_madt(qemu_madt(range(288)))
    platform = decide(cpus=288, online=(1 << 256) - 1, cpuid=KVM_EXT, apic_base=X2APIC_BASE, kernel="6.12.0", madt=madt)
    assert (platform.apic_destination, platform.source) == ("8bit", "inferred")


@pytest.mark.parametrize(
    "cpuid, source",
    [(KVM_NO_EXT, "cpuid"), (TCG, "default"), (None, "default")],
)
def test_8bit_sources(cpuid, source):
    # KVM decoded as "not offered" decides 8-bit (cpuid); a hypervisor without such a leaf cannot.
    platform = decide(cpuid=cpuid, apic_base=X2APIC_BASE)
    assert (platform.apic_destination, platform.source) == ("8bit", source)


def test_remapping_keeps_non_remapped_controllers_8bit_even_when_offered():
    # try_to_enable_x2apic: with IRQ_REMAP_X2APIC_MODE the extended destination ID is not set up.
    platform = decide(cpus=288, chips=("IR-IO-APIC", "IR-PCI-MSI", "DMAR-MSI"), cpuid=KVM_EXT)
    assert (platform.apic_destination, platform.source, platform.remapped) == ("8bit", "chip", True)
    assert platform.online_limit is None


def test_config_outranks_everything():
    platform = decide(cpus=300, cpuid=KVM_NO_EXT, config=Config(ext_dest_id=False))
    assert (platform.apic_destination, platform.source) == ("8bit", "config")
    assert any("inconsistent" in note for note in platform.notes)


def test_contradicting_facts_are_reported_not_resolved():
    platform = decide(cpus=300, apic_base=XAPIC_BASE, cpuid=KVM_EXT)
    assert any("inconsistent: IA32_APIC_BASE says xAPIC" in note for note in platform.notes)


# -- hypervisor identity -----------------------------------------------------------------------


def test_hyperv_without_cpuid_from_vmbus():
    platform = decide(cpus=300, chips=("IR-IO-APIC", "Hyper-V PCIe MSI"), vmbus=True)
    assert (platform.vmm, platform.vendor, platform.hyperv_stub, platform.remapped) == (
        "hyper-v",
        "hyperv",
        True,
        False,
    )
    assert platform.online_limit is None  # the stub lets x2APIC run with any APIC ID


def test_vmbus_beside_a_real_iommu_is_not_the_stub():
    platform = decide(chips=("IR-IO-APIC",), vmbus=True, acpi_tables=frozenset({"DMAR"}))
    assert (platform.hyperv_stub, platform.remapped) == (False, True)


@pytest.mark.parametrize(
    "dmi, vmm",
    [
        ({"sys_vendor": "QEMU"}, "qemu"),
        ({"sys_vendor": "Cloud Hypervisor"}, "cloud-hypervisor"),
        ({"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine"}, "hyper-v"),
        ({"sys_vendor": "Amazon EC2"}, "ec2-nitro"),
        ({"sys_vendor": "Xen", "product_name": "HVM domU"}, "xen"),
        ({"sys_vendor": "FreeBSD", "bios_vendor": "BHYVE"}, "bhyve"),
        ({"sys_vendor": "Dell Inc.", "product_name": "Virtual Machine"}, None),
        ({}, None),
    ],
)
def test_vmm_from_dmi(dmi, vmm):
    assert decide(cpuid=KVM_NO_EXT, dmi=dmi).vmm == vmm


def test_tcg_signature_means_qemu():
    assert decide(cpuid=TCG).vmm == "qemu"


# -- x2APIC destination mode of non-remapped MSIs ---------------------------------------------


@pytest.mark.parametrize(
    "chips, cmdline, fadt, cluster",
    [
        (("IR-IO-APIC", "DMAR-MSI"), "", 0x000084A5, True),  # remapping: cluster (x2apic_cluster.c)
        (("IR-IO-APIC", "DMAR-MSI"), "ro x2apic_phys", None, False),  # the boot line forces physical
        (("IR-IO-APIC", "DMAR-MSI"), "", 0x000084A5 | 1 << 19, False),  # FADT FORCE_APIC_PHYSICAL_DESTINATION_MODE
        (("IO-APIC", "DMAR-MSI"), "", None, False),  # no remapping: x2apic_phys = 1
    ],
)
def test_cluster_mode(chips, cmdline, fadt, cluster):
    assert decide(chips=chips, cmdline=cmdline, fadt_flags=fadt, apic_base=X2APIC_BASE).x2apic_cluster is cluster


# -- added for the mutation run (tools/mutation.py): exact notes, boundaries and sources ---------

XEN_SIG = (0x566E6558, 0x65584D4D, 0x4D4D566E)  # "XenVMMXenVMM"
HYPERV_SIG = (0x7263694D, 0x666F736F, 0x76482074)  # "Microsoft Hv"


def xen_leaves(offered):
    # enlighten_hvm.c msi_ext_dest_id: leaf base + 4 EAX bit 5 (XEN_HVM_CPUID_EXT_DEST_ID)
    return {(0x40000000, 0): (0x40000004, *XEN_SIG), (0x40000004, 0): (0x20 if offered else 0, 0, 0, 0)}


def hyperv_leaves(offered):
    # mshyperv.c ms_hyperv_msi_ext_dest_id: 0x40000081 EAX "VS#1", 0x40000082 EAX bit 2
    return {
        (0x40000000, 0): (0x4000000C, *HYPERV_SIG),
        (0x40000081, 0): (0x31235356, 0, 0, 0),
        (0x40000082, 0): (0x4 if offered else 0, 0, 0, 0),
    }


@pytest.mark.parametrize("leaves", [xen_leaves, hyperv_leaves], ids=["xen", "hyperv"])
@pytest.mark.parametrize(
    "offered, kernel, dest, source",
    [(True, "5.11.0", "15bit", "cpuid"), (True, "5.10.0", "8bit", "default"), (False, "6.12.0", "8bit", "cpuid")],
)
def test_xen_and_hyperv_leaves_are_used_from_5_11(leaves, offered, kernel, dest, source):
    # Both leaves arrived in Linux 5.11 (enlighten_hvm.c, mshyperv.c); "not offered" from a decoded leaf is
    # CPUID's answer, not a default.
    platform = decide(kernel=kernel, cpuid=leaves(offered), apic_base=X2APIC_BASE)
    assert (platform.apic_destination, platform.source, platform.vendor_source) == (dest, source, "cpuid")


def test_offered_on_an_old_or_unknown_kernel_says_so():
    old = decide(kernel="5.10.0", cpuid=KVM_EXT, apic_base=X2APIC_BASE)
    assert "CPUID offers the extended destination ID, but kernel 5.10.0 predates its support" in old.notes
    unknown = decide(kernel=None, cpuid=KVM_EXT, apic_base=X2APIC_BASE)
    assert "CPUID offers the extended destination ID, but kernel ? predates its support" in unknown.notes
    assert "kernel version unknown" in unknown.notes and "kernel version unknown" not in old.notes
    not_offered = decide(kernel="5.10.0", cpuid=KVM_NO_EXT, apic_base=XAPIC_BASE)
    assert not any(note.startswith("CPUID offers") for note in not_offered.notes)
    no_leaf = decide(kernel="5.10.0", cpuid=TCG, apic_base=X2APIC_BASE)  # an interface without such a leaf
    assert not any(note.startswith("CPUID offers") for note in no_leaf.notes)


def test_offered_under_xapic_says_why_it_is_unused():
    platform = decide(cpuid=KVM_EXT, apic_base=XAPIC_BASE)
    assert "CPUID offers the extended destination ID, but the kernel runs xAPIC: not used" in platform.notes


def test_xapic_limits():
    # default_apic_id_valid: xAPIC accepts APIC IDs below 255, for delivery and for bringing CPUs online.
    platform = decide(apic_base=XAPIC_BASE)
    assert (platform.limit, platform.online_limit) == (254, 254)
    assert decide(apic_base=X2APIC_BASE, cpuid=KVM_NO_EXT).online_limit == 255


def test_mode_evidence_boundaries_and_sources():
    # APIC ID 254 fits xAPIC; 255 does not (xAPIC accepts IDs below 255).
    assert decide(cpus=255).apic_mode is None
    assert (decide(cpus=256).apic_mode, decide(cpus=256).mode_source) == ("x2apic", "inferred")
    for platform in (decide(cmdline="nox2apic"), decide(x2apic_capable=False), decide(chips=("IR-IO-APIC",))):
        assert platform.mode_source == "inferred"


def test_the_mode_note_without_a_reason_for_the_missing_msr():
    from irqagent.records import replace

    facts = replace(make_facts(cpus=4), apic_base_note="")
    platform = decide_platform(facts, Config(), ("IO-APIC",))
    assert (
        "the kernel's APIC mode cannot be told: IA32_APIC_BASE unreadable (the cpuinfo x2apic flag is the CPU's)"
        in platform.notes
    )


def test_vendor_sources():
    assert (decide(cpuid=KVM_NO_EXT).vendor, decide(cpuid=KVM_NO_EXT).vendor_source) == ("kvm", "cpuid")
    bare = decide(cpuid=None)
    assert (bare.vendor, bare.vendor_source, bare.ext_dest_id_offered) == ("unknown", "default", None)
    assert "no CPUID answer" in bare.notes
    xen = decide(cpuid=None, dmi={"sys_vendor": "Xen", "product_name": "HVM domU"})
    assert (xen.vendor, xen.vendor_source) == ("xen", "inferred")
    qemu = decide(cpuid=None, dmi={"sys_vendor": "QEMU"})
    assert (qemu.vmm, qemu.vendor, qemu.vendor_source) == ("qemu", "unknown", "default")


def test_only_refused_ids_above_255_with_a_cpu_number_contradict_the_offer():
    # APIC IDs 0-255 in the MADT, 255 offline (a CPU number, within 8 bits): nothing refused above 255.
    madt = parse_madt(qemu_madt(range(256)))
    platform = decide(cpus=256, online=(1 << 255) - 1, cpuid=KVM_EXT, apic_base=X2APIC_BASE, madt=madt)
    assert (platform.apic_destination, platform.source) == ("15bit", "cpuid")
    # A disabled slot above 255 with no CPU number for it (possible = present = online) was never refused.
    slots = parse_madt(qemu_madt([0, 1, 2, 3, 300], enabled=[True] * 4 + [False], revision=3))
    platform = decide(cpus=4, cpuid=KVM_EXT, apic_base=X2APIC_BASE, madt=slots)
    assert (platform.apic_destination, platform.source) == ("15bit", "cpuid")


def test_the_refused_note_names_the_first_refused_apic_id():
    madt = parse_madt(qemu_madt(range(288)))
    platform = decide(cpus=288, online=(1 << 256) - 1, cpuid=KVM_EXT, apic_base=X2APIC_BASE, madt=madt)
    assert (
        "CPUID offers the extended destination ID, but the kernel refused APIC IDs above 255 (e.g. 256): "
        "it does not use it" in platform.notes
    )


def test_inferred_notes_and_the_5_11_boundary_of_the_backport_note():
    platform = decide(cpus=257, kernel="5.11.0", cpuid=KVM_NO_EXT)
    assert "CPUID does not offer the extended destination ID: an interface the agent cannot decode" in platform.notes
    assert not any("predates 5.11" in note for note in platform.notes)
    unknown = decide(cpus=257, kernel=None, cpuid=KVM_EXT)
    assert (unknown.apic_destination, unknown.source) == ("15bit", "inferred")
    old = decide(cpus=257, kernel="5.10.0", cpuid=KVM_EXT)
    assert "kernel 5.10.0 predates 5.11: a vendor backport of the extended destination ID" in old.notes


def test_the_remapping_note():
    platform = decide(chips=("IR-IO-APIC", "IR-PCI-MSI"), cpuid=KVM_EXT)
    assert (
        "interrupt remapping is on: the kernel does not use the extended destination ID (try_to_enable_x2apic), "
        "and non-remapped controllers keep 8-bit destinations" in platform.notes
    )


def _inconsistent(platform):
    return [note for note in platform.notes if note.startswith("inconsistent")]


def test_inconsistency_notes_and_their_boundaries():
    # xAPIC with APIC ID 254 online is consistent; 255 is not.
    assert _inconsistent(decide(cpus=255, apic_base=XAPIC_BASE)) == []
    assert _inconsistent(decide(cpus=256, apic_base=XAPIC_BASE)) == [
        "inconsistent: IA32_APIC_BASE says xAPIC, yet an online CPU has APIC ID 255 > 254"
    ]
    assert _inconsistent(decide(cpus=256, apic_base=X2APIC_BASE)) == []
    # Without remapping, APIC ID 32767 is the most 15 bits name; 32768 is not.
    assert _inconsistent(decide(cpus=2, apic_ids=[0, 32767], apic_base=X2APIC_BASE)) == []
    assert _inconsistent(decide(cpus=2, apic_ids=[0, 32768], apic_base=X2APIC_BASE)) == [
        "inconsistent: an online CPU has APIC ID 32768 > 32767 without interrupt remapping"
    ]
    assert _inconsistent(decide(cpus=2, apic_ids=[0, 32768], chips=("IR-IO-APIC",))) == []
    stub = decide(cpus=2, apic_ids=[0, 32768], chips=("IR-IO-APIC", "Hyper-V PCIe MSI"), vmbus=True)
    assert stub.hyperv_stub and _inconsistent(stub) == []
    # The config says 8-bit: APIC ID 255 online is consistent, 256 is not, unless remapping lifts the limit.
    eight = Config(ext_dest_id=False)
    assert _inconsistent(decide(cpus=256, config=eight, apic_base=X2APIC_BASE)) == []
    assert _inconsistent(decide(cpus=257, config=eight, apic_base=X2APIC_BASE)) == [
        "inconsistent: the config says 8-bit, yet an online CPU has APIC ID 256 > 255"
    ]
    assert _inconsistent(decide(cpus=257, config=eight, chips=("IR-IO-APIC",))) == []
    assert _inconsistent(decide(cpus=257, config=Config(ext_dest_id=True), apic_base=X2APIC_BASE)) == []


def test_remapping_chips_by_name():
    # IR- chips of VT-d and AMD-Vi domains are remapped; the HPET's IR-HPET-MSI is not settable and does not
    # count as evidence.
    assert decide(chips=("IR-PCI-MSI-0000:00:03.0", "IO-APIC")).remapped
    assert not decide(chips=("IO-APIC", "IR-HPET-MSI")).remapped


def test_platform_defaults_and_immutability():
    from irqagent.platform import Platform
    from irqagent.records import FrozenError

    values = dict(
        vendor="kvm",
        vendor_source="cpuid",
        vmm="qemu",
        vmm_evidence="test",
        ext_dest_id=False,
        ext_dest_id_offered=False,
        source="cpuid",
        apic_destination="8bit",
        apic_mode="x2apic",
        mode_source="msr",
        remapped=False,
        hyperv_stub=False,
        x2apic_cluster=False,
        kernel="6.12.0",
    )
    platform = Platform(**values)
    assert (platform.limit, platform.broadcast_255, platform.notes) == (255, False, ())
    with pytest.raises(FrozenError):
        platform.source = "config"  # type: ignore[misc]


def test_the_notes_tell_the_whole_decision_in_order():
    # The report's "why": what CPUID said, how the APIC mode was found, what decided the destination.
    inferred = decide(cpus=257, cpuid=KVM_NO_EXT)
    assert inferred.notes == (
        "CPUID (cpu 0): kvm at 0x40000000, extended destination ID not offered (KVM leaf 0x40000001 EAX bit 15)",
        "x2apic: an online CPU has APIC ID 256, which xAPIC cannot name (dev/cpu/0/msr does not exist)",
        "inferred: an online CPU has APIC ID 256 > 255 without interrupt remapping, which the kernel only allows "
        "with the extended destination ID",
        "CPUID does not offer the extended destination ID: an interface the agent cannot decode",
    )
    configured = decide(cpuid=KVM_NO_EXT, apic_base=X2APIC_BASE, config=Config(ext_dest_id=True))
    assert configured.notes == (
        "CPUID (cpu 0): kvm at 0x40000000, extended destination ID not offered (KVM leaf 0x40000001 EAX bit 15)",
        "IA32_APIC_BASE 0xfee00d00: the kernel runs x2apic",
        "config sets reachability.ext_dest_id = true",
    )
