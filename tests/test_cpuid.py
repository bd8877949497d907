import struct

import pytest
from hypothesis import given, strategies as st

from irqagent import cpuid


# Literal register values. Signatures are the vendor strings as EBX, ECX, EDX (little-endian words):
KVM = (0x4B4D564B, 0x564B4D56, 0x0000004D)  # "KVMKVMKVM\0\0\0" (arch/x86/include/uapi/asm/kvm_para.h)
HYPERV = (0x7263694D, 0x666F736F, 0x76482074)  # "Microsoft Hv" (hyperv-tlfs.h)
XEN = (0x566E6558, 0x65584D4D, 0x4D4D566E)  # "XenVMMXenVMM" (xen/interface/arch-x86/cpuid.h)
BHYVE = (0x76796862, 0x68622065, 0x20657679)  # "bhyve bhyve " (arch/x86/kernel/cpu/bhyve.c)
VMWARE = (0x61774D56, 0x4D566572, 0x65726177)  # "VMwareVMware"
TCG = (0x54474354, 0x43544743, 0x47435447)  # "TCGTCGTCGTCG": the real QEMU 10 captures, leaf 0x40000000


def test_this_machine_kvm_leaves_decode():
    # Read on this machine with pread(/dev/cpu/0/cpuid): KVM, feature EAX 0x01007efb (bit 15 clear).
    leaves = {(0x40000000, 0): (0x40000001, *KVM), (0x40000001, 0): (0x01007EFB, 0, 0, 0)}
    answer = cpuid.decode(leaves)
    assert (answer.vendor, answer.ext_dest_id) == ("kvm", False)


def test_kvm_ext_dest_id_is_bit_15_of_the_feature_leaf():
    # KVM_FEATURE_MSI_EXT_DEST_ID is 15 (kvm_para.h): 0x8000 set, and only that bit matters.
    assert cpuid.decode({(0x40000000, 0): (0x40000001, *KVM), (0x40000001, 0): (0x0100FEFB, 0, 0, 0)}).ext_dest_id
    assert cpuid.decode({(0x40000000, 0): (0x40000001, *KVM), (0x40000001, 0): (0x00008000, 0, 0, 0)}).ext_dest_id
    assert not cpuid.decode({(0x40000000, 0): (0x40000001, *KVM), (0x40000001, 0): (0xFFFF7FFF, 0, 0, 0)}).ext_dest_id


def test_kvm_found_above_hyperv_enlightenments():
    leaves = {
        (0x40000000, 0): (0x4000000B, *HYPERV),
        (0x40000100, 0): (0x40000101, *KVM),
        (0x40000101, 0): (0x00008000, 0, 0, 0),
    }
    answer = cpuid.decode(leaves)
    assert answer.vendor == "kvm" and answer.ext_dest_id
    assert "also offers hyperv" in answer.detail


@pytest.mark.parametrize("eax, offered", [(0x0000003F, True), (0x00000020, True), (0x0000001F, False), (0, False)])
def test_xen_leaf_4_bit_5(eax, offered):
    # XEN_HVM_CPUID_EXT_DEST_ID is (1u << 5) in leaf base + 4 (enlighten_hvm.c); Xen puts its leaves at
    # 0x40000100 when viridian (Hyper-V) enlightenments take 0x40000000.
    leaves = {
        (0x40000000, 0): (0x40000005, *HYPERV),
        (0x40000100, 0): (0x40000105, *XEN),
        (0x40000104, 0): (eax, 0, 0, 0),
    }
    answer = cpuid.decode(leaves)
    assert answer.vendor == "xen" and answer.ext_dest_id is offered


def test_xen_bit_ignored_when_max_leaf_too_low():
    leaves = {(0x40000000, 0): (0x40000002, *XEN), (0x40000004, 0): (0x00000020, 0, 0, 0)}
    assert not cpuid.decode(leaves).ext_dest_id


@pytest.mark.parametrize("properties, offered", [(0x00000004, True), (0xFFFFFFFB, False), (0, False)])
def test_hyperv_virt_stack_leaves(properties, offered):
    # mshyperv.c ms_hyperv_msi_ext_dest_id: 0x40000081 EAX == 0x31235356 ("VS#1"), then 0x40000082 EAX BIT(2).
    leaves = {
        (0x40000000, 0): (0x4000000C, *HYPERV),
        (0x40000081, 0): (0x31235356, 0, 0, 0),
        (0x40000082, 0): (properties, 0, 0, 0),
    }
    answer = cpuid.decode(leaves)
    assert answer.vendor == "hyperv" and answer.ext_dest_id is offered


def test_hyperv_needs_the_vs_signature():
    leaves = {
        (0x40000000, 0): (0x4000000C, *HYPERV),
        (0x40000081, 0): (0x31235357, 0, 0, 0),
        (0x40000082, 0): (0x00000004, 0, 0, 0),
    }
    assert not cpuid.decode(leaves).ext_dest_id


@pytest.mark.parametrize(
    "eax, max_leaf, offered", [(1, 0x40000001, True), (0, 0x40000001, False), (1, 0x40000000, False)]
)
def test_bhyve_features_bit_0(eax, max_leaf, offered):
    # bhyve.c: CPUID_BHYVE_FEATURES 0x40000001, CPUID_BHYVE_FEAT_EXT_DEST_ID (1UL << 0), read only when the
    # maximum leaf reaches it.
    leaves = {(0x40000000, 0): (max_leaf, *BHYVE), (0x40000001, 0): (eax, 0, 0, 0)}
    answer = cpuid.decode(leaves)
    assert answer.vendor == "bhyve" and answer.ext_dest_id is offered


@pytest.mark.parametrize("signature, vendor", [(VMWARE, "vmware"), (TCG, "tcg")])
def test_hypervisors_without_an_extended_destination_leaf(signature, vendor):
    # The feature bits of other interfaces mean something else: bit 15 set must not read as offered.
    leaves = {(0x40000000, 0): (0x40000010, *signature), (0x40000001, 0): (0xFFFFFFFF, 0, 0, 0)}
    answer = cpuid.decode(leaves)
    assert (answer.vendor, answer.ext_dest_id) == (vendor, False)


def test_a_signature_nobody_knows():
    leaves = {(1, 0): (0, 0, 0x80000000, 0), (0x40000000, 0): (0x40000001, 0x41414141, 0x41414141, 0x41414141)}
    answer = cpuid.decode(leaves)
    assert (answer.vendor, answer.ext_dest_id) == ("unknown", False)
    assert "AAAAAAAAAAAA" in answer.detail


def test_bare_metal_and_unknown():
    assert cpuid.decode({(1, 0): (0x00A00F11, 0x00020800, 0x7FFA3203, 0x178BFBFF)}).vendor == "none"
    assert cpuid.decode({(1, 0): (0, 0, 0x80000000, 0)}).vendor == "unknown"


def test_text_form_round_trip_and_comments():
    leaves = {(1, 0): (1, 2, 3, 4), (0x40000000, 0): (0x40000001, *KVM), (0x40000002, 0): (0, 0, 0, 0)}
    text = cpuid.format_text(leaves, "a header")
    assert text.startswith("# a header")
    assert cpuid.parse_text(text) == {k: v for k, v in leaves.items() if v != cpuid.ZERO}
    assert cpuid.parse_text("0x40000001 0x0 0x01007afb 0x0 0x0 0x0 # note\n\n") == {
        (0x40000001, 0): (0x01007AFB, 0, 0, 0)
    }


@pytest.mark.parametrize("line", ["0x1 0x0 0x1", "zz 0 0 0 0 0", "0x1 0 0x100000000 0 0 0"])
def test_text_form_errors_name_the_line(line):
    with pytest.raises(cpuid.CpuidFormatError, match="line 2"):
        cpuid.parse_text("# ok\n" + line)


def test_device_bytes_and_offset():
    assert cpuid.decode_bytes(struct.pack("<4I", 1, 2, 3, 4)) == (1, 2, 3, 4)
    assert cpuid.device_offset(0x40000001, 2) == (2 << 32) | 0x40000001
    with pytest.raises(cpuid.CpuidFormatError):
        cpuid.decode_bytes(b"short")


def test_collect_asks_only_what_decode_needs():
    table = {
        (0x40000000, 0): (0x4000000C, *HYPERV),
        (0x40000081, 0): (0x31235356, 0, 0, 0),
        (0x40000082, 0): (0x00000004, 0, 0, 0),
    }
    asked = []

    def query(leaf, sub):
        asked.append(leaf)
        return table.get((leaf, sub), cpuid.ZERO)

    leaves = cpuid.collect(query)
    assert cpuid.decode(leaves).ext_dest_id
    assert 0x40000082 in asked
    assert len(asked) < 300


@given(st.binary(max_size=64))
def test_text_parser_gives_32_bit_leaves_or_names_the_line(data):
    text = data.decode("utf-8", "replace")
    try:
        leaves = cpuid.parse_text(text)
    except cpuid.CpuidFormatError as exc:
        assert str(exc).startswith("line ") and "\n" not in str(exc)
        return
    assert all(0 <= value < 1 << 32 for key, regs in leaves.items() for value in key + tuple(regs))
    assert cpuid.parse_text(cpuid.format_text(leaves)) == {k: v for k, v in leaves.items() if any(v)}


leaf_values = st.integers(0, (1 << 32) - 1)


@given(st.dictionaries(st.tuples(leaf_values, leaf_values), st.tuples(*[leaf_values] * 4), max_size=8))
def test_text_form_round_trips(leaves):
    """What snapshot writes, audit reads back: every non-zero leaf, exactly."""
    assert cpuid.parse_text(cpuid.format_text(leaves, header="a\nb")) == {k: v for k, v in leaves.items() if any(v)}


@given(st.binary(max_size=40))
def test_device_bytes_decode_cleanly(data):
    try:
        regs = cpuid.decode_bytes(data)
    except cpuid.CpuidFormatError:
        assert len(data) != 16
    else:
        assert len(data) == 16 and all(0 <= r < 1 << 32 for r in regs)
        cpuid.decode({(0x40000000, 0): regs, (0x40000001, 0): regs})  # any answer decodes
