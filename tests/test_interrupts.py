import os

import pytest
from hypothesis import given, strategies as st

from irqagent.interrupts import InterruptsFormatError, parse_interrupts

from conftest import FIXTURES


def test_real_proc_interrupts_of_this_machine():
    with open(os.path.join(FIXTURES, "real-files", "interrupts-6.18")) as handle:
        table = parse_interrupts(handle.read())
    assert table[26] == ("IO-APIC", "ttyS0")
    assert table[34] == ("PCI-MSIX-0000:00:05.0", "virtio4-input")
    assert "NMI" not in table and all(isinstance(k, int) for k in table)


def test_old_joined_chip_and_type():
    text = (
        "           CPU0       CPU1\n"
        "  0:         45          0   IO-APIC-edge      timer\n"
        " 24:  1  2   PCI-MSI-edge      eth0\n"
    )
    assert parse_interrupts(text) == {0: ("IO-APIC", "timer"), 24: ("PCI-MSI", "eth0")}


def test_chip_names_with_spaces():
    text = "  CPU0\n 24:  5  Hyper-V PCIe MSI 134742016-edge      mlx5_comp0@pci:a0b1:00:02.0\n"
    assert parse_interrupts(text)[24] == ("Hyper-V PCIe MSI", "mlx5_comp0@pci:a0b1:00:02.0")


def test_shared_irq_names_and_missing_columns():
    text = "  CPU0 CPU1\n  9:  0  0  IO-APIC   9-fasteoi   acpi, virtio0\n 10:  0\n"
    table = parse_interrupts(text)
    assert table[9] == ("IO-APIC", "acpi, virtio0")
    assert table[10] == ("", "")


@pytest.mark.parametrize("text", ["", "garbage\n 1: 0 IO-APIC 1-edge x\n"])
def test_bad_header(text):
    with pytest.raises(InterruptsFormatError):
        parse_interrupts(text)


@given(st.text(max_size=300))
def test_any_text_gives_its_own_irq_lines_or_a_one_line_error(text):
    try:
        table = parse_interrupts(text)
    except InterruptsFormatError as exc:
        assert "\n" not in str(exc)
        return
    labels = [line.split(":", 1)[0].strip() for line in text.splitlines()[1:] if ":" in line]
    for irq, (chip, name) in table.items():
        assert str(irq) in labels or any(label.isdigit() and int(label) == irq for label in labels)
        assert chip in text and name in text and "\n" not in chip + name


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-@", min_size=1, max_size=12)


@given(
    st.dictionaries(
        st.integers(0, 5000),
        st.tuples(st.sampled_from(["IO-APIC", "PCI-MSI", "PCI-MSIX-0000:00:05.0", "xen-dyn"]), words),
        min_size=1,
        max_size=20,
    ),
    st.integers(1, 4),
)
def test_any_table_in_the_kernel_layout_parses_back(irqs, cpus):
    """A /proc/interrupts in the layout of kernel/irq/proc.c (counts per CPU, chip, hwirq-type, names)."""
    lines = ["      " + "".join(f"CPU{cpu:<8}" for cpu in range(cpus))]
    for irq, (chip, name) in sorted(irqs.items()):
        counts = "".join(f"{irq * 7 + cpu:>11}" for cpu in range(cpus))
        lines.append(f"{irq:>4}:{counts}  {chip:>8}  {irq}-edge      {name}")
    lines.append(" NMI:" + "".join(f"{0:>11}" for _ in range(cpus)) + "   Non-maskable interrupts")
    assert parse_interrupts("\n".join(lines) + "\n") == irqs
