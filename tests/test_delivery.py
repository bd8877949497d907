"""irqagent.delivery: which chips move at once, pending and stuck moves, the boot fix."""

import pytest

from irqagent import delivery


@pytest.mark.parametrize(
    "chip, at_once",
    [
        # chip names as the real 6.12 and 6.1 guests showed them (sys/kernel/irq/N/chip_name)
        ("IR-IO-APIC", True),
        ("IR-PCI-MSIX-0000:00:02.0", True),
        ("IR-PCI-MSI", True),  # 6.1
        ("DMAR-MSI", False),
        ("IO-APIC", False),
        ("PCI-MSIX-0000:00:01.0", False),
        ("PCI-MSI", False),
        ("HPET-MSI", None),
        ("xen-dyn-event", None),
        ("", None),
    ],
)
def test_which_chips_move_at_once(chip, at_once):
    assert delivery.moves_at_once(chip) is at_once


@pytest.mark.parametrize(
    "text, mask",
    [("0", 1), ("0-2,5", 0b100111), ("", 0), (None, None), ("zz", None), ("0-99", None)],
)
def test_effective_affinity_text(text, mask):
    assert delivery.parse_effective(text, 8) == mask  # 0-99: beyond nr_cpu_ids 8 is unparsable


def test_movement_settled_pending_stuck_unknown():
    unreachable = 0b0100  # CPU 2
    assert delivery.movement(0b0011, 0b0001, unreachable).state == "settled"
    assert delivery.movement(0b0011, 0, unreachable).state == "settled"  # no vector yet
    pending = delivery.movement(0b0010, 0b1000, unreachable)
    assert (pending.state, pending.effective, pending.unreachable) == ("pending", 0b1000, 0)
    assert pending.detail == "the kernel moves it from CPU 3 at its next interrupt"
    stuck = delivery.movement(0b0011, 0b0100, unreachable)
    assert (stuck.state, stuck.unreachable) == ("stuck", 0b0100)
    assert stuck.detail.startswith("the kernel still delivers it to CPU 2, which this controller cannot reach")
    assert delivery.movement(0b0111, 0b0100, unreachable).state == "stuck"  # inside the mask but unreachable
    unknown = delivery.movement(0b0011, None, unreachable)
    assert (unknown.state, unknown.effective, unknown.unreachable) == ("unknown", 0, 0)
    assert unknown.detail == "no readable effective_affinity_list: judged on the mask alone"
    settled = delivery.movement(0b0011, 0b0010, unreachable)
    assert (settled.effective, settled.unreachable, settled.detail) == (0b0010, 0, "")


def test_boot_fix_takes_the_cpus_every_stuck_irqs_controller_reaches():
    fix = delivery.boot_fix({4: 0b1111, 24: 0b0011}, "ro quiet", 4)
    assert (fix.irqs, fix.cpus, fix.parameter, fix.present, fix.covered) == (
        (4, 24),
        0b0011,
        "irqaffinity=0-1",
        None,
        False,
    )
    assert fix.text.endswith(
        "; a stuck move cannot be completed from user space, and default_smp_affinity is set too late "
        "for IRQs the kernel requests while it boots (DMAR-MSI, IRQs of built-in drivers)"
    )
    assert delivery.boot_fix({}, "", 4) is None
    none = delivery.boot_fix({4: 0b0001, 5: 0b0010}, "", 4)
    assert none.parameter is None and none.text.startswith("no online CPU is reachable by all")


@pytest.mark.parametrize(
    "cmdline, present, covered",
    [
        ("irqaffinity=0", "0", True),
        ("irqaffinity=0-3 irqaffinity=1", "1", True),  # the last one wins
        ("irqaffinity=0-3", "0-3", False),
        ("irqaffinity=bogus", "bogus", False),
        ("noirqaffinity=0", None, False),
        ("irqaffinity=0=1", "0=1", False),  # the value is all after the first "="
    ],
)
def test_boot_fix_reads_the_irqaffinity_already_on_the_command_line(cmdline, present, covered):
    fix = delivery.boot_fix({4: 0b0011}, cmdline, 4)
    assert (fix.present, fix.covered) == (present, covered)
