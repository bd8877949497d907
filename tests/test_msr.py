"""IA32_APIC_BASE: the kernel's APIC mode."""

import struct

import pytest
from hypothesis import given, strategies as st

from irqagent import msr


@pytest.mark.parametrize(
    "value, mode",
    [
        (0xFEE00D00, "x2apic"),  # base 0xFEE00000, bit 11 enable, bit 10 EXTD, bit 8 BSP (Intel SDM)
        (0xFEE00C00, "x2apic"),  # an AP
        (0xFEE00900, "xapic"),  # enabled, EXTD clear: a guest whose kernel logged "x2apic disabled"
        (0xFEE00100, None),  # globally disabled
        (None, None),
    ],
)
def test_apic_mode_from_apic_base(value, mode):
    assert msr.apic_mode(value) == mode


def test_text_form():
    text = "# IA32_APIC_BASE of CPU 0\n0x1b 0x00000000fee00d00\n\n0x10 12345 # another MSR\n"
    assert msr.parse_text(text) == {0x1B: 0xFEE00D00, 0x10: 12345}
    assert msr.parse_text(msr.format_text({0x1B: 0xFEE00900}, "header")) == {0x1B: 0xFEE00900}


@pytest.mark.parametrize("line", ["0x1b", "0x1b zz", "0x1b 0x10000000000000000", "1" * 40 + " 1"])
def test_text_errors_name_the_line(line):
    with pytest.raises(msr.MsrFormatError, match="line 2"):
        msr.parse_text("# ok\n" + line)


def test_device_bytes_are_little_endian():
    assert msr.decode_bytes(struct.pack("<Q", 0xFEE00D00)) == 0xFEE00D00
    assert msr.decode_bytes(bytes([0x00, 0x0D, 0xE0, 0xFE, 0, 0, 0, 0])) == 0xFEE00D00
    with pytest.raises(msr.MsrFormatError):
        msr.decode_bytes(b"1234")


@given(st.text(max_size=200))
def test_any_text_parses_or_raises_msr_error(text):
    try:
        values = msr.parse_text(text)
    except msr.MsrFormatError:
        return
    assert all(0 <= value < 1 << 64 for value in values.values())
