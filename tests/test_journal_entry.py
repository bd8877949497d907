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
