"""The pipeline around the plan: which journal a run builds on, what it reads, what the daemon's
memory of refused writes keeps from being written again."""

import io

import pytest

from irqagent import runner
from irqagent.config import Config, parse_config
from irqagent.errors import StateError
from irqagent.journal import EMPTY, Journal, JournalEntry, JournalStore, Scope
from irqagent.kernel import KernelTree
from irqagent.plan import IrqRow

from conftest import read, write

# cloud-hypervisor-320: its IO-APIC reaches APIC IDs 0-255 only (devices/src/ioapic.rs), so apply
# rewrites the legacy IRQs 1, 4, 8, 9, 12 from 0-319 to 0-255; the MSIs and the default comply.
GUEST = "cloud-hypervisor-320"
BOOT = "0b5e2b8e-4f0e-4a57-9a43-3b8a0e4c2f11"


def test_a_write_refused_before_is_reported_again_not_repeated(tree, tmp_path):
    root = tree(GUEST)
    asked = []

    def refused(row):
        asked.append(row.irq)
        if row.irq != 4:
            return None
        return IrqRow(
            4, row.chip, row.name, None, "8bit", "0-319", None, "0-255", "managed", False, "EIO", "the kernel said no"
        )

    report = runner.apply(KernelTree(root), Config(), JournalStore(str(tmp_path / "state")), refused=refused)
    assert sorted(asked) == [1, 4, 8, 9, 12]  # only the IRQs about to be written are looked up
    row = {r.irq: r for r in report.rows}[4]
    assert (row.status, row.errno, row.target) == ("managed", "EIO", "0-255")
    assert row.detail.startswith("the kernel said no; refused before: not retried")
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-319"  # not written
    assert report.writes == 4 and read(root, "proc/irq/1/smp_affinity_list") == "0-255"
    assert sorted(JournalStore(str(tmp_path / "state")).load().entries) == [1, 8, 9, 12]


@pytest.mark.parametrize("config, nodes", [("", False), ('[policy]\nmode = "spread"\n', True)])
def test_numa_nodes_are_read_only_when_some_irq_may_be_spread(tree, config, nodes):
    root = tree(GUEST)
    facts = runner.read_facts(KernelTree(root), parse_config(config))
    assert {irq.irq: irq.node for irq in facts.irqs}[24] == (0 if nodes else None)


def journal_of(root, boot_id=BOOT):
    return Journal({4: JournalEntry(4, "0-319", "0-255", "IO-APIC", "i8042")}, None, root, boot_id)


def test_apply_refuses_to_replace_another_roots_journal(tmp_path):
    store = JournalStore(str(tmp_path / "state"))
    with pytest.raises(StateError, match=r"holds 1 entries of root /elsewhere, not this root.*refusing to replace"):
        runner.usable_journal(store, journal_of("/elsewhere"), Scope("/", BOOT))


def test_apply_drops_an_earlier_boots_journal_with_a_notice(tmp_path):
    store = JournalStore(str(tmp_path / "state"))
    notices = []
    journal = runner.usable_journal(store, journal_of("/", "1" * 8 + BOOT[8:]), Scope("/", BOOT), notices.append)
    assert journal == Journal({}, None, "/", BOOT)
    assert len(notices) == 1 and notices[0].endswith(
        "from an earlier boot (boot ID 11111111" + BOOT[8:] + "): history: dropped"
    )


def test_apply_builds_on_this_boots_journal(tmp_path):
    store = JournalStore(str(tmp_path / "state"))
    assert runner.usable_journal(store, journal_of("/"), Scope("/", BOOT)) == journal_of("/")


def test_read_only_commands_warn_about_a_journal_they_cannot_use(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    write(str(state), "journal.json", "{torn")
    warnings = io.StringIO()
    assert runner.peek_journal(JournalStore(str(state)), Scope("/", BOOT), warnings) is EMPTY
    assert warnings.getvalue().startswith(f"irqagent: warning: journal {state}/journal.json is damaged (not JSON")
    assert warnings.getvalue().count("\n") == 1
