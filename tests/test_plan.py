from hypothesis import given, settings, strategies as st

from irqagent import cpumask
from irqagent.config import Config, Policy, parse_config
from irqagent.controllers import build_controllers, chip_counts
from irqagent.facts import IrqFacts
from irqagent.journal import EMPTY, Journal, JournalEntry
from irqagent.plan import make_plan
from irqagent.platform import decide_platform

from conftest import make_facts


def plan_for(facts, config=None, journal=EMPTY):
    config = config or Config()
    chips = chip_counts(irq.chip for irq in facts.irqs)
    platform = decide_platform(facts, config, chips)
    controllers = build_controllers(chips, platform, facts.topology, config)
    return make_plan(facts, config, controllers, journal)


def rows(plan):
    return {row.irq: row for row in plan.rows}


def test_restrict_removes_unreachable_cpus():
    facts = make_facts(cpus=300, kernel="5.4.0", irqs=[(24, "PCI-MSI", "0-299"), (25, "PCI-MSI", "250-299")])
    r = rows(plan_for(facts))
    assert (r[24].status, r[24].target, r[24].compliant) == ("would-change", "0-254", False)
    assert r[25].target == "250-254"
    assert "CPUs 255-299 are unreachable under 8-bit destination" in r[24].detail


def test_fallback_to_every_reachable_cpu_when_nothing_is_left():
    facts = make_facts(cpus=300, kernel="5.4.0", irqs=[(24, "PCI-MSI", "260-270")])
    row = rows(plan_for(facts))[24]
    assert row.target == "0-254" and "using every allowed CPU" in row.detail


def test_compliant_irq_is_ok_and_keeps_its_mask():
    facts = make_facts(cpus=300, kernel="5.4.0", irqs=[(24, "PCI-MSI", "3-7")])
    row = rows(plan_for(facts))[24]
    assert (row.status, row.target, row.compliant) == ("ok", "3-7", True)


def test_offline_cpus_do_not_count_and_are_never_written():
    online = cpumask.parse_cpulist("0-2,4-299")
    facts = make_facts(cpus=300, kernel="5.4.0", online=online, irqs=[(24, "PCI-MSI", "3"), (25, "PCI-MSI", "3,260")])
    r = rows(plan_for(facts))
    # Only an offline CPU: complies, but the kernel would deliver anywhere: pin it to reachable CPUs.
    assert (r[24].status, r[24].compliant, r[24].target) == ("would-change", True, "0-2,4-254")
    assert r[25].target == "0-2,4-254"  # 3 is offline: never written


def test_invalid_mask_is_failed_and_the_run_goes_on():
    facts = make_facts(cpus=4, irqs=[(24, "PCI-MSI", "zz"), (25, "PCI-MSI", "0-9"), (26, "PCI-MSI", "0-3")])
    r = rows(plan_for(facts))
    assert (r[24].status, r[24].errno, r[24].compliant) == ("failed", None, False)
    assert "beyond the last possible CPU" in r[25].detail
    assert r[26].status == "ok"


def test_managed_irq_is_never_written_and_says_how_to_fix():
    facts = make_facts(cpus=300, kernel="5.4.0", irqs=[(40, "PCI-MSI", "255-260", False), (41, "PCI-MSI", "1", False)])
    r = rows(plan_for(facts))
    assert (r[40].status, r[40].compliant, r[40].target) == ("managed", False, None)
    assert "irqaffinity=0-254" in r[40].detail and "isolcpus=managed_irq,255-299" in r[40].detail
    assert (r[41].status, r[41].compliant) == ("managed", True)


def test_not_settable_chips_are_fixed_by_kernel():
    facts = make_facts(cpus=300, irqs=[(0, "XT-PIC", "0-299"), (2, "HPET-MSI", "0")])
    assert {row.status for row in plan_for(facts).rows} == {"fixed-by-kernel"}


def test_vanished_and_unreadable():
    facts = make_facts(cpus=2, irqs=[IrqFacts(irq=5, vanished=True), IrqFacts(irq=6, read_error="cannot read: EIO")])
    r = rows(plan_for(facts))
    assert (r[5].status, r[5].compliant) == ("vanished", True)
    assert (r[6].status, r[6].compliant) == ("failed", False)


def test_unreachable_when_no_online_cpu_is_reachable():
    config = parse_config('[[controller]]\nchip = "IO-APIC"\ndestination = "8bit"\nreachable_apic_ids = "200"\n')
    facts = make_facts(cpus=4, irqs=[(4, "IO-APIC", "0-3")])
    row = rows(plan_for(facts, config))[4]
    assert (row.status, row.compliant, row.target) == ("unreachable", False, None)


def test_exclusions_from_config_and_cmdline():
    config = Config(policy=Policy(exclude_cpus=cpumask.parse_cpulist("0")))
    facts = make_facts(cpus=8, cmdline="isolcpus=managed_irq,6-7", irqs=[(24, "PCI-MSI", "0-7")])
    plan = plan_for(facts, config)
    row = rows(plan)[24]
    assert (row.target, row.compliant, row.status) == ("1-5", True, "would-change")
    assert "isolcpus=managed_irq,6-7" in row.detail
    off = Config(policy=Policy(honour_cmdline=False))
    assert rows(plan_for(facts, off))[24].status == "ok"


def test_rule_cpus_ignore_and_reachability():
    config = parse_config('[[rule]]\nirq = "24"\ncpus = "2-3,260"\n[[rule]]\nirq = "25"\nignore = true\n')
    facts = make_facts(cpus=300, kernel="5.4.0", irqs=[(24, "PCI-MSI", "0-299"), (25, "PCI-MSI", "0-299")])
    r = rows(plan_for(facts, config))
    assert r[24].target == "2-3" and "of which 260 are unreachable" in r[24].detail
    assert (r[25].status, r[25].compliant) == ("ignored", False)


def test_journal_original_comes_back_after_hotplug():
    # The agent wrote 0-1 over an original 0-3 while CPUs 2-3 were offline; they are back.
    journal = Journal({24: JournalEntry(24, "0-3", "0-1", "PCI-MSI", "dev24")})
    facts = make_facts(cpus=4, irqs=[(24, "PCI-MSI", "0-1")])
    row = rows(plan_for(facts, journal=journal))[24]
    assert (row.status, row.target) == ("would-change", "0-3")
    # Someone else changed it since: their mask is respected.
    journal = Journal({24: JournalEntry(24, "0-3", "0", "PCI-MSI", "dev24")})
    assert rows(plan_for(facts, journal=journal))[24].status == "ok"


def test_default_affinity_is_restricted():
    facts = make_facts(
        cpus=300,
        kernel="5.4.0",
        irqs=[(24, "PCI-MSI", "0")],
        default_affinity=cpumask.format_hexmask((1 << 300) - 1, 300),
    )
    plan = plan_for(facts)
    assert (plan.default_affinity.status, plan.default_affinity.target) == ("would-change", "0-254")
    off = Config(policy=Policy(default_smp_affinity=False))
    assert plan_for(facts, off).default_affinity is None


def test_spread_mode_plans_one_cpu_per_irq_and_is_stable():
    config = Config(policy=Policy(mode="spread"))
    irqs = [
        IrqFacts(irq=irq, chip="PCI-MSI", name=f"q{irq}", device="0000:00:05.0", affinity_text="0-7")
        for irq in range(24, 28)
    ]
    facts = make_facts(cpus=8, irqs=irqs)
    plan = plan_for(facts, config)
    targets = [row.target for row in plan.rows]
    assert sorted(targets) == ["0", "1", "2", "3"]
    applied = make_facts(
        cpus=8,
        irqs=[
            IrqFacts(irq=r.irq, chip="PCI-MSI", name=f"q{r.irq}", device="0000:00:05.0", affinity_text=r.target)
            for r in plan.rows
        ],
    )
    assert {row.status for row in plan_for(applied, config).rows} == {"ok"}


masks = st.integers(0, (1 << 300) - 1)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(masks, st.booleans()), min_size=1, max_size=8),
    st.integers(1, (1 << 300) - 1),
    st.integers(0, (1 << 300) - 1),
)
def test_plan_invariants(irq_masks, online, excluded):
    """Every target is non-empty, online and reachable; excluded CPUs only when nothing else is left;
    writing the targets and planning again changes nothing."""
    irqs = [(24 + i, "PCI-MSI", cpumask.format_cpulist(mask), writable) for i, (mask, writable) in enumerate(irq_masks)]
    facts = make_facts(cpus=300, kernel="5.4.0", online=online, irqs=irqs)
    config = Config(policy=Policy(exclude_cpus=excluded))
    plan = plan_for(facts, config)
    reachable = online & ((1 << 255) - 1)
    for row in plan.rows:
        if row.status == "would-change":
            assert row.target_mask and row.target_mask & ~reachable == 0
            if reachable & ~excluded:
                assert row.target_mask & excluded == 0
        if row.status == "unreachable":
            assert reachable == 0
    applied = [
        (row.irq, "PCI-MSI", row.target if row.status == "would-change" else row.affinity, writable)
        for row, (_, writable) in zip(plan.rows, irq_masks)
    ]
    again = plan_for(make_facts(cpus=300, kernel="5.4.0", online=online, irqs=applied), config)
    assert [row.irq for row in again.rows] == [row.irq for row in plan.rows]
    for before, after in zip(plan.rows, again.rows):
        assert after.status != "would-change", (before, after)
        if before.status == "would-change":  # what apply wrote now stands, and complies
            assert (after.status, after.affinity, after.compliant) == ("ok", before.target, True)


def test_effective_affinity_on_an_unreachable_cpu_is_mentioned():
    irq = IrqFacts(irq=24, chip="PCI-MSI", name="q", affinity_text="0-254", effective_text="280")
    row = rows(plan_for(make_facts(cpus=300, kernel="5.4.0", irqs=[irq])))[24]
    assert (row.status, row.compliant) == ("ok", True)
    assert "still delivers it to CPU 280 until its next interrupt" in row.detail
    garbage = IrqFacts(irq=24, chip="PCI-MSI", name="q", affinity_text="0-254", effective_text="zz")
    assert rows(plan_for(make_facts(cpus=300, kernel="5.4.0", irqs=[garbage])))[24].detail == ""


def test_unknown_chip_is_named_in_the_irq_detail():
    facts = make_facts(cpus=4, irqs=[(24, "FOO-MSI", "0-3")])
    row = rows(plan_for(facts))[24]
    assert (row.destination, row.status) == ("8bit", "ok")
    assert "unknown chip 'FOO-MSI'" in row.detail
