"""One journal entry: which masks are the agent's, and what is kept once a write is over."""

from irqagent.journal_entry import JournalEntry, settled


def entry(**kwargs):
    fields = dict(irq=24, original="0-299", written="0-254", chip="PCI-MSI", name="virtio1-input.0")
    fields.update(kwargs)
    return JournalEntry(**fields)


def test_masks_in_the_entry_file_form():
    assert entry().mask("0-3,8") == 0b100001111
    hexed = entry(file="smp_affinity", original="ff,00000000", written="f")
    assert hexed.mask(hexed.original) == 0xFF << 32 and hexed.mask(hexed.written) == 0xF
    assert entry().mask(None) is None and entry().mask("not a mask") is None


def test_same_interrupt_needs_chip_and_name():
    assert entry().same_interrupt("PCI-MSI", "virtio1-input.0")
    assert not entry().same_interrupt("PCI-MSI", "nvme0q1")
    assert not entry().same_interrupt("IO-APIC", "virtio1-input.0")


def test_the_agents_masks_are_the_written_and_the_pending_one():
    e = entry(pending="0-127")
    assert e.holds_agent_mask((1 << 255) - 1) and e.holds_agent_mask((1 << 128) - 1)
    assert not e.holds_agent_mask((1 << 300) - 1)  # the original is not the agent's
    assert not e.holds_agent_mask(None) and not e.holds_agent_mask(1)


def test_the_entry_accounts_for_its_original_and_the_agents_masks():
    e = entry()
    assert e.accounts_for((1 << 300) - 1) and e.accounts_for((1 << 255) - 1)
    assert not e.accounts_for(0b1) and not e.accounts_for(None)


def test_settled_after_a_write_read_back():
    e = entry(written=None, pending="0-254")
    after = settled(e, "0-254")
    assert (after.original, after.written, after.pending) == ("0-299", "0-254", None)


def test_settled_after_a_refused_first_write_drops_the_entry():
    assert settled(entry(written=None, pending="0-254"), None) is None


def test_settled_after_a_refused_later_write_keeps_the_earlier_one():
    after = settled(entry(written="0-254", pending="0-127"), None)
    assert (after.original, after.written, after.pending) == ("0-299", "0-254", None)


# -- added for the mutation run (docs/mutation-testing.md) -------------------------------------------


def test_masks_name_cpus_below_65536():
    """README (damaged journal): masks parsed, CPUs below 65,536; a mask beyond is not the agent's."""
    assert entry().mask("65535") == 1 << 65535
    assert entry().mask("65536") is None and entry().mask("0-65536") is None
    hexed = entry(file="smp_affinity")
    words = ",".join(["00000000"] * 2047)  # smp_affinity: 32-bit words, highest first
    assert hexed.mask("80000000," + words) == 1 << 65535 and hexed.mask("1,00000000," + words) is None
    assert not entry(written="65536").holds_agent_mask(1 << 65536)


def test_an_entry_without_chip_name_or_file_is_a_cpulist_entry_of_no_chip():
    bare = JournalEntry(24, "0-3", "0-1")
    assert (bare.chip, bare.name, bare.file, bare.time, bare.pending) == ("", "", "smp_affinity_list", 0.0, None)
    assert bare.mask("0-1") == 0b11 and bare.mask("3") == 0b1000  # cpulists, not hex masks
    assert bare.same_interrupt("", "") and not bare.same_interrupt("PCI-MSI", "")
