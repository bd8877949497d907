import struct

import pytest
from hypothesis import given, strategies as st

from irqagent import cpuid
from irqagent.devtools.gentree import cpuid_leaves


def sig(text: bytes):
    return struct.unpack("<3I", text)


def test_this_machine_kvm_leaves_decode():
    # Read on this machine with pread(/dev/cpu/0/cpuid): KVM, feature EAX 0x01007efb (bit 15 clear).
    leaves = {(0x40000000, 0): (0x40000001, 0x4B4D564B, 0x564B4D56, 0x4D), (0x40000001, 0): (0x01007EFB, 0, 0, 0)}
    answer = cpuid.decode(leaves)
    assert (answer.vendor, answer.ext_dest_id) == ("kvm", False)


def test_kvm_ext_dest_id_bit_15():
    leaves = {(0x40000000, 0): (0x40000001, *sig(b"KVMKVMKVM\0\0\0")), (0x40000001, 0): (1 << 15, 0, 0, 0)}
    assert cpuid.decode(leaves).ext_dest_id


def test_kvm_found_above_hyperv_enlightenments():
    leaves = {
        (0x40000000, 0): (0x4000000B, *sig(b"Microsoft Hv")),
        (0x40000100, 0): (0x40000101, *sig(b"KVMKVMKVM\0\0\0")),
        (0x40000101, 0): (1 << 15, 0, 0, 0),
    }
    answer = cpuid.decode(leaves)
    assert answer.vendor == "kvm" and answer.ext_dest_id
    assert "also offers hyperv" in answer.detail


@pytest.mark.parametrize("ext", [True, False])
def test_xen_leaf_4_bit_5(ext):
    answer = cpuid.decode(cpuid_leaves("xen", ext))
    assert answer.vendor == "xen" and answer.ext_dest_id is ext


def test_xen_bit_ignored_when_max_leaf_too_low():
    leaves = {(0x40000000, 0): (0x40000002, *sig(b"XenVMMXenVMM")), (0x40000004, 0): (1 << 5, 0, 0, 0)}
    assert not cpuid.decode(leaves).ext_dest_id


@pytest.mark.parametrize("ext", [True, False])
def test_hyperv_virt_stack_leaves(ext):
    answer = cpuid.decode(cpuid_leaves("hyperv", ext))
    assert answer.vendor == "hyperv" and answer.ext_dest_id is ext


def test_hyperv_needs_the_vs_signature():
    leaves = cpuid_leaves("hyperv", True)
    leaves[(cpuid.HYPERV_VS_INTERFACE, 0)] = (0x12345678, 0, 0, 0)
    assert not cpuid.decode(leaves).ext_dest_id


def test_bare_metal_and_unknown():
    assert cpuid.decode(cpuid_leaves("none", False)).vendor == "none"
    assert cpuid.decode({(1, 0): (0, 0, 1 << 31, 0)}).vendor == "unknown"


def test_text_form_round_trip_and_comments():
    leaves = cpuid_leaves("kvm", True)
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
    table = cpuid_leaves("hyperv", True)
    asked = []

    def query(leaf, sub):
        asked.append(leaf)
        return table.get((leaf, sub), cpuid.ZERO)

    leaves = cpuid.collect(query)
    assert cpuid.decode(leaves).ext_dest_id
    assert cpuid.HYPERV_VS_PROPERTIES in asked
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
