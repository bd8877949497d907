import pytest

from irqagent.config import Config
from irqagent.devtools.gentree import cpuid_leaves
from irqagent.platform import decide_platform, parse_kernel_version

from conftest import make_facts


@pytest.mark.parametrize(
    "release, expected",
    [
        ("6.1.0-18-amd64", (6, 1)),
        ("5.11.0", (5, 11)),
        ("4.14.355", (4, 14)),
        ("", None),
        ("weird", None),
        (None, None),
    ],
)
def test_kernel_version(release, expected):
    assert parse_kernel_version(release) == expected


def big(kernel="6.1.0", cpuid=None, chips=("IO-APIC",)):
    return make_facts(cpus=300, kernel=kernel, cpuid=cpuid), chips


def test_cpuid_offers_ext_dest_on_new_kernel():
    facts, chips = big(cpuid=cpuid_leaves("kvm", True))
    platform = decide_platform(facts, Config(), chips)
    assert (platform.apic_destination, platform.source, platform.vendor) == ("15bit", "cpuid", "kvm")


def test_cpuid_offers_but_kernel_too_old():
    facts, chips = big(kernel="5.4.0", cpuid=cpuid_leaves("kvm", True))
    platform = decide_platform(facts, Config(), chips)
    assert (platform.apic_destination, platform.source) == ("8bit", "cpuid")
    assert any("predates 5.11" in note for note in platform.notes)


def test_cpuid_outranks_inference():
    facts, chips = big(cpuid=cpuid_leaves("kvm", False))
    platform = decide_platform(facts, Config(), chips)
    assert (platform.apic_destination, platform.source) == ("8bit", "cpuid")
    assert any("trusting CPUID" in note for note in platform.notes)


def test_inferred_without_cpuid():
    facts, chips = big()
    platform = decide_platform(facts, Config(), chips)
    assert (platform.apic_destination, platform.source) == ("15bit", "inferred")


@pytest.mark.parametrize("kernel, chips", [("5.4.0", ("IO-APIC",)), ("6.1.0", ("IR-IO-APIC",))])
def test_no_inference_on_old_kernels_or_with_remapping(kernel, chips):
    facts, _ = big(kernel=kernel)
    platform = decide_platform(facts, Config(), chips)
    assert (platform.apic_destination, platform.source) == ("8bit", "default")


def test_config_forces():
    facts, chips = big(cpuid=cpuid_leaves("kvm", False))
    platform = decide_platform(facts, Config(ext_dest_id=True), chips)
    assert (platform.apic_destination, platform.source) == ("15bit", "config")


def test_vendor_inferred_from_chips_when_no_cpuid():
    facts = make_facts(cpus=2)
    assert decide_platform(facts, Config(), ["HV-PCI-MSIX", "IR-IO-APIC"]).vendor == "hyperv"
    assert decide_platform(facts, Config(), ["xen-dyn"]).vendor == "xen"
    hv = decide_platform(facts, Config(), ["HV-PCI-MSIX", "IR-IO-APIC"])
    assert not hv.remapped  # the Hyper-V IOMMU stub does not remap


def test_unknown_kernel_is_conservative():
    facts = make_facts(cpus=300, kernel=None, cpuid=cpuid_leaves("kvm", True))
    platform = decide_platform(facts, Config(), ["IO-APIC"])
    assert platform.apic_destination == "8bit"
    assert any("kernel version unknown" in note for note in platform.notes)
