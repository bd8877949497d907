import pytest

from irqagent import cpumask
from irqagent.config import Config, ControllerOverride
from irqagent.controllers import alias_groups, build_controllers, classify_chip
from irqagent.platform import Platform

from conftest import make_facts


def platform(vendor="kvm", dest="8bit", source="cpuid"):
    return Platform(
        vendor=vendor,
        vendor_source="cpuid",
        ext_dest_id=dest == "15bit",
        source=source,
        apic_destination=dest,
        kernel="6.1.0",
        kernel_version=(6, 1),
        remapped=False,
        x2apic=True,
    )


@pytest.mark.parametrize(
    "chip, expected",
    [
        ("IO-APIC", "8bit"),
        ("PCI-MSI", "8bit"),
        ("PCI-MSI-0000:00:05.0", "8bit"),
        ("PCI-MSIX-0000:00:05.0", "8bit"),
        ("DMAR-MSI", "8bit"),
        ("IOMMU-MSI", "8bit"),
        ("AMD-Vi", "8bit"),
        ("IR-IO-APIC", "remapped"),
        ("IR-PCI-MSI", "remapped"),
        ("IR-PCI-MSIX-0000:00:05.0", "remapped"),
        ("HPET-MSI", "none"),
        ("XT-PIC", "none"),
        ("IR-HPET-MSI", "none"),
        ("xen-percpu", "none"),
        ("xen-pirq", "any"),
        ("xen-dyn", "any"),
        ("xen-dyn-lateeoi", "any"),
        ("Hyper-V PCIe MSI", "any"),
        ("HV-PCI-MSI", "any"),
        ("HV-PCI-MSIX", "any"),
    ],
)
def test_every_known_chip(chip, expected):
    assert classify_chip(chip, platform())[0] == expected


def test_hyperv_ir_only_on_hyperv():
    assert classify_chip("IR-IO-APIC", platform(vendor="hyperv"))[:2] == ("hyperv-ir", "chip")
    assert classify_chip("IR-IO-APIC", platform(vendor="kvm"))[0] == "remapped"


def test_apic_chips_follow_the_platform_and_its_source():
    assert classify_chip("IO-APIC", platform(dest="15bit", source="inferred"))[:2] == ("15bit", "inferred")


def test_unknown_chip_gets_default_and_a_detail():
    destination, source, detail = classify_chip("FOO-MSI", platform())
    assert (destination, source) == ("8bit", "default")
    assert "unknown chip 'FOO-MSI'" in detail


def test_reachability_8bit_300_cpus():
    facts = make_facts(cpus=300)
    controllers = build_controllers({"IO-APIC": 2}, platform(), facts.topology, Config())
    io = controllers["IO-APIC"]
    assert cpumask.format_cpulist(io.reachable) == "0-254"
    assert cpumask.format_cpulist(io.unreachable) == "255-299"
    assert io.reachable_apic_text == "0-254"


def test_broadcast_255_allowed_by_config():
    facts = make_facts(cpus=4, apic_ids=[0, 1, 2, 255])
    strict = build_controllers({"IO-APIC": 1}, platform(), facts.topology, Config())["IO-APIC"]
    lenient = build_controllers({"IO-APIC": 1}, platform(), facts.topology, Config(broadcast_apic_id_255=True))[
        "IO-APIC"
    ]
    assert cpumask.format_cpulist(strict.unreachable) == "3"
    assert lenient.unreachable == 0


def test_15bit_reaches_32767_not_beyond():
    facts = make_facts(cpus=3, apic_ids=[0, 32767, 32768])
    c = build_controllers({"IO-APIC": 1}, platform(dest="15bit"), facts.topology, Config())["IO-APIC"]
    assert cpumask.format_cpulist(c.reachable) == "0-1"


def test_sparse_apic_ids():
    facts = make_facts(cpus=64, apic_ids=[cpu * 8 for cpu in range(64)])
    c = build_controllers({"PCI-MSI": 1}, platform(), facts.topology, Config())["PCI-MSI"]
    assert cpumask.format_cpulist(c.reachable) == "0-31"  # APIC IDs 0..248


def test_config_override_with_explicit_apic_ids():
    facts = make_facts(cpus=8)
    config = Config(controllers=(ControllerOverride("IO-*", "8bit", cpumask.parse_cpulist("0-3")),))
    c = build_controllers({"IO-APIC": 1, "PCI-MSI": 1}, platform(), facts.topology, config)
    assert (c["IO-APIC"].source, cpumask.format_cpulist(c["IO-APIC"].reachable)) == ("config", "0-3")
    assert c["PCI-MSI"].source == "cpuid"


def test_none_controller_reaches_nothing_and_is_not_settable():
    facts = make_facts(cpus=4)
    c = build_controllers({"XT-PIC": 1}, platform(), facts.topology, Config())["XT-PIC"]
    assert not c.settable and c.reachable == 0 and c.unreachable == 0


def test_alias_prediction_old_kernel_truncation():
    facts = make_facts(cpus=300)
    lines = [line for _, line in alias_groups(cpumask.parse_cpulist("255-299"), facts.topology, 8)]
    assert lines[0].startswith("APIC ID 255 (CPU 255) is the 8-bit broadcast ID")
    assert "APIC IDs 256-511 (CPUs 256-299) truncate to 8 bits: delivered to CPUs 0-43" == lines[1]


def test_alias_prediction_lost_when_no_cpu_owns_the_low_id():
    facts = make_facts(cpus=3, apic_ids=[0, 2, 257])
    lines = [line for _, line in alias_groups(0b100, facts.topology, 8)]
    assert "lost for CPU 2" in lines[0]
