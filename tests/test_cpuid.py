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


# Added for the mutation run (tools/mutation.py): each test pins a value or a boundary a mutant changed.


@pytest.mark.parametrize(
    "regs, vendor",
    [
        ((0x4E524341, 0x4E524341, 0x4E524341), "acrn"),  # "ACRNACRNACRN" (arch/x86/kernel/cpu/acrn.c)
        ((0x6C69614A, 0x73756F68, 0x00000065), "jailhouse"),  # "Jailhouse\0\0\0" (arch/x86/kernel/jailhouse.c)
        ((0x786F4256, 0x786F4256, 0x786F4256), "virtualbox"),  # "VBoxVBoxVBox" (VirtualBox's GIM provider)
        ((0x70726C20, 0x68797065, 0x72762020), "parallels"),  # " lrpepyh  vr": Parallels' byte-swapped "prl hyperv"
        (VMWARE, "vmware"),
        (TCG, "tcg"),
        (BHYVE, "bhyve"),
    ],
)
def test_each_known_signature_names_its_vendor(regs, vendor):
    answer = cpuid.decode({(0x40000000, 0): (0x40000001, *regs)})
    assert answer.vendor == vendor
    assert answer.detail.startswith(f"{vendor} at 0x40000000, extended destination ID not offered")


def test_the_last_hypervisor_base_is_searched():
    # arch/x86/include/asm/processor.h hypervisor_cpuid_base: for (base = 0x40000000; base < 0x40010000;
    # base += 0x100): the last base looked at is 0x4000ff00.
    leaves = {(0x4000FF00, 0): (0x4000FF01, *KVM), (0x4000FF01, 0): (0x00008000, 0, 0, 0)}
    answer = cpuid.decode(leaves)
    assert (answer.vendor, answer.ext_dest_id) == ("kvm", True)
    assert answer.detail == "kvm at 0x4000ff00, extended destination ID offered (KVM leaf 0x4000ff01 EAX bit 15)"
    assert cpuid.decode({(0x40010000, 0): (0x40010001, *KVM), (0x40010001, 0): (0x8000, 0, 0, 0)}).vendor == "none"
    asked = []
    cpuid.collect(lambda leaf, sub: asked.append(leaf) or cpuid.ZERO)
    assert asked[0] == 0x1 and asked[1] == 0x40000000 and asked[-1] == 0x4000FF00 and len(asked) == 257


def test_bases_are_searched_every_0x100():
    leaves = {(0x40000200, 0): (0x40000204, *XEN), (0x40000204, 0): (0x20, 0, 0, 0)}
    answer = cpuid.decode(leaves)
    assert (answer.vendor, answer.ext_dest_id) == ("xen", True)
    assert answer.detail == "xen at 0x40000200, extended destination ID offered (Xen leaf 0x40000204 EAX bit 5)"
    assert cpuid.decode({(0x40000080, 0): (0x40000081, *KVM)}).vendor == "none"


def test_collect_reads_leaf_1_and_the_leaves_after_each_signature():
    # Leaf 1 ECX bit 31 is the hypervisor bit; a signature's leaves base+1..base+5 follow it.
    table = {(0x1, 0): (0, 0, 0x80000000, 0), (0x40000100, 0): (0x40000105, *XEN)}
    asked = []

    def query(leaf, sub):
        asked.append((leaf, sub))
        return table.get((leaf, sub), cpuid.ZERO)

    leaves = cpuid.collect(query)
    assert asked[:9] == [(leaf, 0) for leaf in (0x1, 0x40000000, 0x40000100, 0x40000101, 0x40000102, 0x40000103)] + [
        (0x40000104, 0),
        (0x40000105, 0),
        (0x40000200, 0),
    ]
    assert all(sub == 0 for _, sub in asked) and set(leaves) == set(asked)
    assert cpuid.decode({(0x1, 0): leaves[(0x1, 0)]}).vendor == "unknown"


def test_collect_reads_the_hyperv_vs_leaves_only_after_a_hyperv_signature():
    asked = []
    table = {(0x40000000, 0): (0x40000001, *KVM)}
    cpuid.collect(lambda leaf, sub: asked.append(leaf) or table.get((leaf, sub), cpuid.ZERO))
    assert 0x40000081 not in asked and 0x40000082 not in asked


def test_xen_max_leaf_exactly_base_plus_4_reaches_the_bit():
    leaves = {(0x40000000, 0): (0x40000004, *XEN), (0x40000004, 0): (0x00000020, 0, 0, 0)}
    assert cpuid.decode(leaves).ext_dest_id
    leaves[(0x40000000, 0)] = (0x40000003, *XEN)
    assert not cpuid.decode(leaves).ext_dest_id


def test_details_name_the_leaf_and_bit_read():
    kvm = cpuid.decode({(0x40000000, 0): (0x40000001, *KVM)})
    assert kvm.detail == "kvm at 0x40000000, extended destination ID not offered (KVM leaf 0x40000001 EAX bit 15)"
    hyperv = cpuid.decode({(0x40000000, 0): (0x4000000C, *HYPERV)})
    assert hyperv.detail == (
        "hyperv at 0x40000000, extended destination ID not offered (Hyper-V leaves 0x40000081/0x40000082)"
    )
    bhyve = cpuid.decode({(0x40000000, 0): (0x40000001, *BHYVE), (0x40000001, 0): (1, 0, 0, 0)})
    assert bhyve.detail == "bhyve at 0x40000000, extended destination ID offered (bhyve leaf 0x40000001 EAX bit 0)"
    vmware = cpuid.decode({(0x40000000, 0): (0x40000010, *VMWARE)})
    assert vmware.detail.endswith("(no extended destination ID interface for this vendor)")
    assert cpuid.decode({(1, 0): (0, 0, 0x80000000, 0)}).detail == (
        "CPUID has the hypervisor bit but no known signature"
    )
    assert cpuid.decode({}).detail == "CPUID reports no hypervisor"


def test_text_form_error_says_what_a_line_holds():
    with pytest.raises(cpuid.CpuidFormatError) as info:
        cpuid.parse_text("0x1 0x0 0x1")
    assert str(info.value) == "line 1: expected six numbers LEAF SUBLEAF EAX EBX ECX EDX, got '0x1 0x0 0x1'"


def test_bare_metal_and_an_unknown_hypervisor_never_offer_15_bit():
    bare = cpuid.decode({(1, 0): (0x00A00F11, 0x00020800, 0x7FFA3203, 0x178BFBFF)})
    assert (bare.vendor, bare.ext_dest_id) == ("none", False)
    unknown = cpuid.decode({(1, 0): (0, 0, 0x80000000, 0)})
    assert (unknown.vendor, unknown.ext_dest_id) == ("unknown", False)


def test_unknown_signatures_are_shown_without_padding_and_never_fail_to_decode():
    padded = cpuid.decode({(0x40000000, 0): (0x40000001, 0x41414141, 0, 0)})  # "AAAA" and eight NULs
    assert padded.detail.endswith("; unknown signature 'AAAA'")
    ending_in_x = cpuid.decode({(0x40000000, 0): (0x40000001, 0x41414141, 0x41414141, 0x58414141)})
    assert ending_in_x.detail.endswith("; unknown signature 'AAAAAAAAAAAX'")  # only NULs pad a signature
    binary = cpuid.decode({(0x40000000, 0): (0x40000001, 0xFFFFFFFF, 0x41414141, 0x41414141)})
    assert binary.detail.endswith("; unknown signature '\ufffd\ufffd\ufffd\ufffdAAAAAAAA'")


def test_every_other_interface_is_listed():
    leaves = {
        (0x40000000, 0): (0x40000005, *HYPERV),
        (0x40000100, 0): (0x40000105, *XEN),
        (0x40000200, 0): (0x40000201, *VMWARE),
    }
    answer = cpuid.decode(leaves)
    assert answer.vendor == "xen"
    assert answer.detail.endswith("(Xen leaf 0x40000104 EAX bit 5); also offers hyperv, vmware interfaces")


@pytest.mark.parametrize(
    "low, high, vendor",
    [
        (HYPERV, BHYVE, "bhyve"),  # bhyve's native leaves win over Hyper-V enlightenments it also answers
        (VMWARE, HYPERV, "hyperv"),  # an interface whose extended destination leaf is decoded wins
        (HYPERV, VMWARE, "hyperv"),
        (VMWARE, TCG, "vmware"),  # two without such a leaf: the lower base
    ],
)
def test_which_interface_names_the_host(low, high, vendor):
    leaves = {(0x40000000, 0): (0x40000001, *low), (0x40000100, 0): (0x40000101, *high)}
    assert cpuid.decode(leaves).vendor == vendor


def test_defaults_of_the_text_and_device_forms():
    assert cpuid.device_offset(0x40000001) == 0x40000001
    assert cpuid.format_text({(1, 0): (1, 2, 3, 4)}) == (
        "# LEAF SUBLEAF EAX EBX ECX EDX\n0x1 0x0 0x00000001 0x00000002 0x00000003 0x00000004\n"
    )


def test_the_answer_is_immutable():
    from irqagent.records import FrozenError

    answer = cpuid.decode({})
    with pytest.raises(FrozenError):
        answer.ext_dest_id = True  # type: ignore[misc]
