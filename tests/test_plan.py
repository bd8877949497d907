import subprocess
import sys

import pytest
from conftest import REPO, make_facts
from hypothesis import given, settings
from hypothesis import strategies as st

from irqagent import cpumask
from irqagent.config import Config, Policy, parse_config
from irqagent.devtools.profiles import cloud_hypervisor_320
from irqagent.facts import IrqFacts
from irqagent.journal import EMPTY, Journal, JournalEntry
from irqagent.plan import DefaultAffinityRow, may_spread
from irqagent.records import replace
from irqagent.runner import build_model

# Cloud Hypervisor's DMI (vmm/src/vm.rs smbios), as its guests show it in sys/class/dmi/id.
X2APIC_ON = 0xFEE00D00  # IA32_APIC_BASE of a BSP with xAPIC global enable (bit 11) and x2APIC (bit 10)


def cloud_hypervisor(irqs, cpus=320, **kwargs):
    """A 320-vCPU Cloud Hypervisor guest (6.12, every vCPU online with 15-bit MSIs): its IO-APIC builds
    the destination from RTE bits 63-56 only (devices/src/ioapic.rs), so IO-APIC IRQs reach APIC IDs 0-255."""
    return make_facts(
        cpus=cpus, kernel="6.12.0", dmi=cloud_hypervisor_320().dmi, apic_base=X2APIC_ON, irqs=irqs, **kwargs
    )


def plan_for(facts, config=None, journal=EMPTY):
    return build_model(facts, config or Config(), journal).plan


def rows(plan):
    return {row.irq: row for row in plan.rows}


def test_restrict_removes_unreachable_cpus():
    facts = cloud_hypervisor([(4, "IO-APIC", "0-319"), (12, "IO-APIC", "250-319"), (24, "PCI-MSI", "0-319")])
    r = rows(plan_for(facts))
    assert (r[4].status, r[4].target, r[4].compliant) == ("would-change", "0-255", False)
    assert r[12].target == "250-255"
    assert "CPUs 256-319 are unreachable for this IO-APIC" in r[4].detail
    assert (r[24].status, r[24].target, r[24].compliant) == ("ok", "0-319", True)  # its MSIs are 15-bit


def test_fallback_to_every_reachable_cpu_when_nothing_is_left():
    facts = cloud_hypervisor([(4, "IO-APIC", "260-270")])
    row = rows(plan_for(facts))[4]
    assert row.target == "0-255" and "using every allowed CPU" in row.detail


def test_compliant_irq_is_ok_and_keeps_its_mask():
    facts = cloud_hypervisor([(4, "IO-APIC", "3-7")])
    row = rows(plan_for(facts))[4]
    assert (row.status, row.target, row.compliant) == ("ok", "3-7", True)


def test_offline_cpus_do_not_count_and_are_never_written():
    online = cpumask.parse_cpulist("0-2,4-319")
    irqs = [(4, "IO-APIC", "3"), (8, "IO-APIC", "3,260"), (9, "IO-APIC", "2-3,280")]
    r = rows(plan_for(cloud_hypervisor(irqs, online=online)))
    # Only an offline CPU: the kernel shut the IRQ down or moved it: it complies and is never rewritten.
    assert (r[4].status, r[4].compliant, r[4].target) == ("ok", True, "3")
    assert r[8].target == "0-2,4-255"  # 3 is offline: never written
    assert (r[9].status, r[9].target) == ("would-change", "2")


def test_invalid_mask_is_failed_and_the_run_goes_on():
    facts = make_facts(cpus=4, irqs=[(24, "PCI-MSI", "zz"), (25, "PCI-MSI", "0-9"), (26, "PCI-MSI", "0-3")])
    r = rows(plan_for(facts))
    assert (r[24].status, r[24].errno, r[24].compliant) == ("failed", None, False)
    assert "beyond the last possible CPU" in r[25].detail
    assert r[26].status == "ok"


BROADCAST_255 = '[reachability]\napic_id_255 = "broadcast"\n'


def test_managed_irq_is_never_written_and_says_how_to_fix():
    # 256 flat vCPUs under a hypervisor that keeps KVM's broadcast quirk: APIC ID 255 is unreachable.
    facts = make_facts(cpus=256, kernel="6.12.0", irqs=[(40, "PCI-MSI", "252-255", False), (41, "PCI-MSI", "1", False)])
    r = rows(plan_for(facts, parse_config(BROADCAST_255)))
    assert (r[40].status, r[40].compliant, r[40].target) == ("managed", False, None)
    assert "irqaffinity=0-254" in r[40].detail and "isolcpus=managed_irq,255" in r[40].detail
    assert (r[41].status, r[41].compliant) == ("managed", True)
    # With the default (unicast) APIC ID 255 the same guest is consistent: nothing to fix.
    assert {(row.status, row.compliant) for row in plan_for(facts).rows} == {("managed", True)}


def test_not_settable_chips_are_fixed_by_kernel():
    facts = cloud_hypervisor([(0, "XT-PIC", "0-319"), (2, "HPET-MSI", "0")])
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
    config = parse_config('[[rule]]\nirq = "4"\ncpus = "2-3,260"\n[[rule]]\nirq = "12"\nignore = true\n')
    facts = cloud_hypervisor([(4, "IO-APIC", "0-319"), (12, "IO-APIC", "0-319")])
    r = rows(plan_for(facts, config))
    assert r[4].target == "2-3" and "of which 260 are unreachable" in r[4].detail
    assert (r[12].status, r[12].compliant) == ("ignored", False)


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
        cpus=256,
        kernel="6.12.0",
        irqs=[(24, "PCI-MSI", "0")],
        default_affinity=cpumask.format_hexmask((1 << 256) - 1, 256),
    )
    plan = plan_for(facts, parse_config(BROADCAST_255))
    assert (plan.default_affinity.status, plan.default_affinity.target) == ("would-change", "0-254")
    off = parse_config(BROADCAST_255 + "[policy]\ndefault_smp_affinity = false\n")
    assert plan_for(facts, off).default_affinity is None


def test_default_affinity_is_not_narrowed_by_a_hypervisor_exception():
    # New device IRQs on Cloud Hypervisor are 15-bit MSIs; its 8-bit IO-APIC lines all exist from boot.
    everything = cpumask.format_hexmask((1 << 320) - 1, 320)
    plan = plan_for(cloud_hypervisor([(4, "IO-APIC", "0-319")], default_affinity=everything))
    assert (plan.default_affinity.status, plan.default_affinity.target) == ("ok", "0-319")
    assert rows(plan)[4].target == "0-255"


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


masks = st.integers(0, (1 << 320) - 1)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(masks, st.booleans()), min_size=1, max_size=8),
    st.integers(1, (1 << 320) - 1),
    st.integers(0, (1 << 320) - 1),
)
def test_plan_invariants(irq_masks, online, excluded):
    """Every target is non-empty, online and reachable; excluded CPUs only when nothing else is left;
    writing the targets and planning again changes nothing."""
    irqs = [(24 + i, "IO-APIC", cpumask.format_cpulist(mask), writable) for i, (mask, writable) in enumerate(irq_masks)]
    facts = cloud_hypervisor(irqs, online=online)
    config = Config(policy=Policy(exclude_cpus=excluded))
    plan = plan_for(facts, config)
    reachable = online & ((1 << 256) - 1)  # Cloud Hypervisor's IO-APIC: APIC IDs 0-255
    writes = {write.irq: write for write in plan.writes}
    assert sorted(writes) == [row.irq for row in plan.rows if row.status == "would-change"]
    for row, (mask, _) in zip(plan.rows, irq_masks):
        if row.status == "would-change":
            target = cpumask.parse_cpulist(row.target)
            assert writes[row.irq].target == target and writes[row.irq].current == mask
            assert target and target & ~reachable == 0
            if reachable & ~excluded:
                assert target & excluded == 0
        if row.status == "unreachable":
            assert reachable == 0
        if not mask & online:  # no online CPU in the mask: complies, never rewritten
            assert row.status in ("ok", "managed") and row.compliant
    applied = [
        (row.irq, "IO-APIC", row.target if row.status == "would-change" else row.affinity, writable)
        for row, (_, writable) in zip(plan.rows, irq_masks)
    ]
    again = plan_for(cloud_hypervisor(applied, online=online), config)
    assert [row.irq for row in again.rows] == [row.irq for row in plan.rows]
    for before, after in zip(plan.rows, again.rows):
        assert after.status != "would-change", (before, after)
        if before.status == "would-change":  # what apply wrote now stands, and complies
            assert (after.status, after.affinity, after.compliant) == ("ok", before.target, True)


def test_an_irq_whose_vector_is_on_an_unreachable_cpu_is_stuck():
    """Cloud Hypervisor's IO-APIC reaches APIC IDs 0-255 only: a mask of 0-255 with the vector
    still on CPU 280 (the kernel moves it at the next interrupt, which cannot arrive) is stuck
    and does not comply, whatever the mask says."""
    irq = IrqFacts(irq=4, chip="IO-APIC", name="ttyS0", affinity_text="0-255", effective_text="280")
    row = rows(plan_for(cloud_hypervisor([irq])))[4]
    assert (row.status, row.compliant, row.effective, row.target) == ("stuck", False, "280", "0-255")
    assert "still delivers it to CPU 280, which this controller cannot reach" in row.detail


def test_an_irq_whose_vector_waits_on_a_reachable_cpu_is_pending_and_complies():
    irq = IrqFacts(irq=4, chip="IO-APIC", name="ttyS0", affinity_text="1-3", effective_text="0")
    row = rows(plan_for(cloud_hypervisor([irq])))[4]
    assert (row.status, row.compliant) == ("pending", True)
    assert "the kernel moves it from CPU 0 at its next interrupt" in row.detail


def test_an_irq_whose_vector_is_inside_its_mask_is_judged_on_the_mask():
    settled = IrqFacts(irq=4, chip="IO-APIC", name="ttyS0", affinity_text="0-255", effective_text="7")
    row = rows(plan_for(cloud_hypervisor([settled])))[4]
    assert (row.status, row.compliant, row.detail) == ("ok", True, "")
    idle = IrqFacts(irq=4, chip="IO-APIC", name="ttyS0", affinity_text="0-255", effective_text="")
    assert rows(plan_for(cloud_hypervisor([idle])))[4].status == "ok"  # not started: no vector anywhere


def test_a_mask_to_fix_with_its_vector_on_an_unreachable_cpu_stays_would_change_and_says_so():
    irq = IrqFacts(irq=4, chip="IO-APIC", name="ttyS0", affinity_text="0-319", effective_text="300")
    row = rows(plan_for(cloud_hypervisor([irq])))[4]
    assert (row.status, row.compliant, row.target) == ("would-change", False, "0-255")
    assert "still delivers it to CPU 300" in row.detail


def test_unknown_chip_is_named_in_the_irq_detail():
    facts = make_facts(cpus=4, irqs=[(24, "FOO-MSI", "0-3")])
    row = rows(plan_for(facts))[24]
    assert (row.destination, row.status) == ("8bit", "ok")
    assert "unknown chip 'FOO-MSI'" in row.detail


# -- planned writes: what the executor may write, apart from the report rows -----------------------


def test_planned_writes_carry_what_the_executor_needs_and_nothing_is_planned_for_other_rows():
    # Cloud Hypervisor's IO-APIC reaches APIC IDs 0-255 (devices/src/ioapic.rs); CPU 0 is excluded.
    config = Config(policy=Policy(exclude_cpus=1))
    irqs = [
        IrqFacts(irq=4, chip="IO-APIC", name="i8042", affinity_text="3,280"),
        IrqFacts(irq=8, chip="IO-APIC", name="rtc0", affinity_text="00000000,ffffffff", affinity_file="smp_affinity"),
        (12, "IO-APIC", "5-9"),  # complies: no write
        (24, "PCI-MSI", "0-319"),  # 15-bit MSI, CPU 0 excluded: a write
    ]
    plan = plan_for(cloud_hypervisor(irqs), config)
    writes = {write.irq: write for write in plan.writes}
    assert sorted(writes) == [4, 8, 24] and [row.irq for row in plan.rows if row.status == "would-change"] == [4, 8, 24]
    four = writes[4]
    assert (four.file, four.current, four.target) == ("smp_affinity_list", (1 << 3) | (1 << 280), 1 << 3)
    assert four.fallback == ((1 << 256) - 1) & ~1  # ENOSPC: every allowed CPU, 1-255
    assert four.reachable == (1 << 256) - 1 and (four.chip, four.name) == ("IO-APIC", "i8042")
    assert (writes[8].file, writes[8].current, writes[8].target) == ("smp_affinity", (1 << 32) - 1, (1 << 32) - 2)
    assert writes[24].target == ((1 << 320) - 1) & ~1 and writes[24].fallback is None  # target = every allowed CPU
    assert plan.masks[12] == 0b1111100000 and plan.default_write is None


def test_the_default_affinity_write_is_planned_apart():
    # APIC ID 255 is the broadcast ID (8-bit destination): new IRQs must not start on CPU 255.
    everything = cpumask.format_hexmask((1 << 256) - 1, 256)
    facts = make_facts(cpus=256, kernel="6.12.0", irqs=[(24, "PCI-MSI", "0")], default_affinity=everything)
    plan = plan_for(facts, parse_config(BROADCAST_255))
    write = plan.default_write
    assert (write.irq, write.file, write.current, write.target) == (
        -1,
        "default_smp_affinity",
        (1 << 256) - 1,
        (1 << 255) - 1,
    )
    assert plan.writes == ()


def test_report_rows_hold_no_executor_state():
    """The report rows are what the JSON report shows, field for field (schema irqagent.report/2)."""
    plan = plan_for(cloud_hypervisor([(4, "IO-APIC", "0-319")]))
    assert list(vars(plan.rows[0])) == [
        "irq",
        "chip",
        "name",
        "device",
        "destination",
        "affinity",
        "effective",
        "target",
        "status",
        "compliant",
        "errno",
        "detail",
    ]
    assert list(vars(plan.default_affinity or DefaultAffinityRow("", None, "ok"))) == [
        "affinity",
        "target",
        "status",
        "detail",
        "errno",
    ]


def test_without_writes_drops_the_write_and_replaces_only_that_row():
    plan = plan_for(cloud_hypervisor([(4, "IO-APIC", "0-319"), (8, "IO-APIC", "0-319")]))
    refused = replace(plan.rows[0], status="managed", errno="EIO", detail="refused before")
    after = plan.without_writes({4: refused})
    assert [write.irq for write in after.writes] == [8]
    assert after.rows == (refused, plan.rows[1]) and after.masks == plan.masks
    assert plan.without_writes({}) is plan


@pytest.mark.parametrize(
    "text, spread_any",
    [
        ("", False),
        ('[policy]\nmode = "spread"\n', True),
        ('[[rule]]\nname = "nvme*"\nmode = "spread"\n', True),
        ('[[rule]]\nname = "nvme*"\nmode = "spread"\ncpus = "0-3"\n', False),  # its CPUs decide
        ('[policy]\nmode = "spread"\n[[rule]]\nname = "x"\nmode = "restrict"\n', True),  # other IRQs spread
    ],
)
def test_one_rule_decides_spreading_for_the_reader_and_the_plan(text, spread_any):
    """The reader reads NUMA nodes exactly when some IRQ may be spread, by the rule the plan applies."""
    config = parse_config(text)
    assert may_spread(config) is spread_any
    irqs = [
        IrqFacts(irq=24 + i, chip="PCI-MSI", name=f"nvme0q{i}", device="0000:00:04.0", affinity_text="0-7")
        for i in range(4)
    ]
    planned = {row.target for row in plan_for(make_facts(cpus=8, irqs=irqs), config).rows}
    assert (len(planned) == 4) is spread_any  # four queues, four CPUs: spread; else one shared target


def test_plan_does_not_import_the_journal_module():
    """The plan is pure: it reads journal entries, it never loads the I/O module."""
    code = "import sys, irqagent.plan; print('irqagent.journal' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout == "False\n"


# -- added for the mutation run (docs/mutation-testing.md): the details a user reads, boundaries --------
# Oracles: README (statuses, destinations, failure matrix), kernel/irq/proc.c (managed IRQs' files
# are 0444 from 6.12), Cloud Hypervisor's IO-APIC (devices/src/ioapic.rs: APIC ID & 0xff), literal masks.

CH_IOAPIC = (
    "Cloud Hypervisor's IO-APIC builds its message from RTE bits 63-56 only (no extended destination ID): "
    "APIC IDs 0-255 in physical mode (cloud-hypervisor devices/src/ioapic.rs: update_entry)"
)


def test_statuses_are_the_ones_readme_documents_in_its_order():
    """The Prometheus rendering lists one gauge per status, in this order (README, Report formats)."""
    import re

    from irqagent.plan import STATUSES

    with open(f"{REPO}/README.md", encoding="utf-8") as handle:
        text = handle.read().split("## Report formats", 1)[1]
    sentence = re.search(r"`status` is\s+one of (.*?);", text, re.S).group(1)
    assert STATUSES == tuple(re.findall(r"`([a-z-]+)`", sentence))
    assert len(STATUSES) == 11


QUEUE_NOTE = (
    "may be kernel-managed: before 6.12 a managed queue vector's file is writable too, and only the write tells (EIO)"
)


@pytest.mark.parametrize(
    "kernel, name, noted",
    [
        ("6.11.0-26-generic", "virtio1-req.0", True),
        ("5.15.0", "nvme0q3", True),
        ("6.1.0-18-amd64", "eth0-TxRx-2", True),
        ("6.11.0", "virtio2-input.0", True),
        ("", "virtio1-req.0", True),  # unknown kernel: it may be older than 6.12
        ("6.12.0", "virtio1-req.0", False),  # kernel/irq/proc.c: managed IRQs' files are 0444 from 6.12
        ("7.0.0", "nvme0q3", False),
        ("6.11.0", "ttyS0", False),
        ("6.11.0", "virtio0-config", False),
    ],
)
def test_a_queue_vector_before_6_12_may_be_kernel_managed(kernel, name, noted):
    """Before 6.12 a managed IRQ's affinity file is writable (0644) and only the write answers EIO: a
    queue vector's planned write says so."""
    irq = IrqFacts(irq=24, chip="PCI-MSI", name=name, affinity_text="0-3")
    facts = make_facts(cpus=4, kernel=kernel, irqs=[irq])
    row = rows(plan_for(facts, Config(policy=Policy(exclude_cpus=0b1))))[24]
    assert (row.status, row.target) == ("would-change", "1-3")
    excluded = "CPU 0 is excluded (policy.exclude_cpus=0)"
    assert row.detail == (f"{excluded}; {QUEUE_NOTE}" if noted else excluded)


@pytest.mark.parametrize(
    "destination, phrase",
    [
        ("8bit", "8-bit destination"),
        ("15bit", "15-bit extended destination ID"),
        ("hyperv-ir", "the Hyper-V IO-APIC (APIC IDs below 255)"),
        ("remapped", "interrupt remapping"),
        ("any", "paravirtual delivery"),
    ],
)
def test_unreachable_cpus_are_named_with_the_controllers_destination(destination, phrase):
    config = parse_config(
        f'[[controller]]\nchip = "PCI-MSI"\ndestination = "{destination}"\nreachable_apic_ids = "0-1"\n'
    )
    row = rows(plan_for(make_facts(cpus=4, irqs=[(24, "PCI-MSI", "0-3")]), config))[24]
    assert (row.status, row.target, row.compliant) == ("would-change", "0-1", False)
    assert row.detail == f"CPUs 2-3 are unreachable under {phrase}"
    one = rows(plan_for(make_facts(cpus=4, irqs=[(24, "PCI-MSI", "1-2")]), config))[24]
    assert one.detail == f"CPU 2 is unreachable under {phrase}"


def test_a_fixed_chip_is_named_and_complies():
    facts = make_facts(cpus=4, irqs=[(0, "XT-PIC", "0-3"), (8, "HPET-MSI", "0")])
    r = rows(plan_for(facts))
    assert (r[0].status, r[0].compliant, r[0].target) == ("fixed-by-kernel", True, None)
    assert r[0].detail == "XT-PIC delivers per CPU or is fixed; left alone"
    assert r[8].detail == "HPET-MSI delivers per CPU or is fixed; left alone"


def test_vanished_and_unreadable_rows_say_why_and_show_no_mask():
    facts = make_facts(
        cpus=2,
        irqs=[
            IrqFacts(irq=5, vanished=True),
            IrqFacts(irq=6, read_error="cannot read proc/irq/6/smp_affinity_list: Input/output error"),
            IrqFacts(irq=7),
        ],
    )
    r = rows(plan_for(facts))
    assert (r[5].detail, r[5].affinity, r[5].target) == ("the IRQ went away while it was being read", "", None)
    assert r[6].detail == "cannot read proc/irq/6/smp_affinity_list: Input/output error" and r[6].affinity == ""
    assert (r[7].status, r[7].compliant, r[7].detail, r[7].affinity) == ("failed", False, "affinity unreadable", "")
    assert plan_for(facts).writes == ()


def test_no_effective_affinity_or_a_garbled_one_adds_nothing():
    """CPU 0 is unreachable here (config): an absent or unparsable effective mask must not read as CPU 0."""
    config = parse_config('[[controller]]\nchip = "PCI-MSI"\ndestination = "8bit"\nreachable_apic_ids = "1-3"\n')
    for effective in (None, "", "zz"):
        irq = IrqFacts(irq=24, chip="PCI-MSI", name="eth0", affinity_text="1-3", effective_text=effective)
        row = rows(plan_for(make_facts(cpus=4, irqs=[irq]), config))[24]
        assert (row.status, row.compliant, row.detail) == ("ok", True, "")
    irq = IrqFacts(irq=24, chip="PCI-MSI", name="eth0", affinity_text="1-3", effective_text="0")
    row = rows(plan_for(make_facts(cpus=4, irqs=[irq]), config))[24]
    assert (row.status, row.compliant) == ("stuck", False)
    assert row.detail == (
        "the kernel still delivers it to CPU 0, which this controller cannot reach: "
        "the move waits for an interrupt that cannot arrive"
    )


def test_an_irq_on_offline_cpus_only_is_left_alone_and_says_so():
    online = cpumask.parse_cpulist("0-2,4-319")
    irqs = [IrqFacts(irq=4, chip="IO-APIC", name="i8042", affinity_text="3", effective_text="280"), (5, "IO-APIC", "3")]
    r = rows(plan_for(cloud_hypervisor(irqs, online=online)))
    assert r[5].detail == "its mask holds no online CPU: left alone"
    assert (r[5].status, r[5].compliant) == ("ok", True)
    assert (r[4].status, r[4].compliant) == ("stuck", False)  # CPU 280: beyond Cloud Hypervisor's IO-APIC
    assert r[4].detail == (
        "its mask holds no online CPU: left alone; the kernel still delivers it to CPU 280, which this "
        "controller cannot reach: the move waits for an interrupt that cannot arrive"
    )
    managed = make_facts(cpus=4, online=0b0111, irqs=[(24, "PCI-MSI", "3", False)])
    row = rows(plan_for(managed))[24]
    assert (row.status, row.compliant, row.detail) == ("managed", True, "its mask holds no online CPU: left alone")


def test_the_irq_detail_gives_the_alias_prediction_or_points_to_the_controller():
    """Cloud Hypervisor's IO-APIC keeps APIC ID & 0xff: each window of 256 APIC IDs aliases onto CPUs 0-255.
    Up to two windows are spelt out in the IRQ's detail; more are the controller's to list."""
    irqs = [(4, "IO-APIC", "0-1023"), (5, "IO-APIC", "0-600"), (6, "IO-APIC", "0-300"), (7, "IO-APIC", "0-255,700")]
    facts = make_facts(cpus=1024, kernel="6.12.0", dmi=cloud_hypervisor_320().dmi, apic_base=X2APIC_ON, irqs=irqs)
    r = rows(plan_for(facts))
    window = (
        "APIC IDs {0}-{1} (CPUs {0}-{1}) become APIC ID & 0xff under cloud-hypervisor: delivered to CPUs 0-255 instead"
    )
    assert r[4].detail.split("; ") == [
        f"CPUs 256-1023 are unreachable for this IO-APIC: {CH_IOAPIC}",
        "interrupts aimed at them would be delivered elsewhere: see the 3 alias groups of controller IO-APIC",
    ]
    assert r[5].detail.split("; ") == [
        f"CPUs 256-600 are unreachable for this IO-APIC: {CH_IOAPIC}",
        window.format(256, 511),
        window.format(512, 767),
    ]
    assert r[6].detail.split("; ") == [
        f"CPUs 256-300 are unreachable for this IO-APIC: {CH_IOAPIC}",
        window.format(256, 511),
    ]
    assert r[7].detail.split("; ") == [f"CPU 700 is unreachable for this IO-APIC: {CH_IOAPIC}", window.format(512, 767)]


def test_ignored_and_rule_rows_keep_every_explanation():
    config = parse_config('[[rule]]\nirq = "4"\ncpus = "2-3,260"\n[[rule]]\nirq = "12"\nignore = true\n')
    r = rows(plan_for(cloud_hypervisor([(4, "IO-APIC", "0-319"), (12, "IO-APIC", "0-319")]), config))
    unreachable = f"CPUs 256-319 are unreachable for this IO-APIC: {CH_IOAPIC}"
    alias = (
        "APIC IDs 256-511 (CPUs 256-319) become APIC ID & 0xff under cloud-hypervisor: delivered to CPUs 0-63 instead"
    )
    assert r[12].detail.split("; ") == ["excluded by rule 2 (irq='12')", unreachable, alias]
    assert r[4].detail.split("; ") == [
        unreachable,
        alias,
        "rule 1 (irq='4') asks for CPUs 2-3,260",
        "of which 260 are unreachable, offline or excluded",
    ]


def test_exclusions_are_named_with_every_reason():
    config = Config(policy=Policy(exclude_cpus=0b1))
    facts = make_facts(cpus=8, cmdline="isolcpus=managed_irq,6-7", irqs=[(24, "PCI-MSI", "0-7"), (25, "PCI-MSI", "7")])
    r = rows(plan_for(facts, config))
    assert r[24].detail == "CPUs 0,6-7 are excluded (policy.exclude_cpus=0, isolcpus=managed_irq,6-7)"
    assert (r[25].target, r[25].detail) == (
        "1-5",
        "CPU 7 is excluded (policy.exclude_cpus=0, isolcpus=managed_irq,6-7); "
        "none of CPUs 7 is usable: using every allowed CPU",
    )


def test_excluding_every_reachable_cpu_is_ignored_for_the_irq_and_said():
    config = Config(policy=Policy(exclude_cpus=0b1111))
    r = rows(plan_for(make_facts(cpus=4, irqs=[(24, "PCI-MSI", "0-3"), (25, "PCI-MSI", "1")]), config))
    note = "every reachable CPU is excluded: ignoring the exclusion for this IRQ"
    assert (r[24].status, r[24].target, r[24].detail) == ("ok", "0-3", note)
    assert (r[25].status, r[25].target, r[25].detail) == ("ok", "1", note)
    unknown = rows(plan_for(make_facts(cpus=4, irqs=[(24, "FOO-MSI", "0-3")]), config))[24]
    assert unknown.detail.split("; ") == ["unknown chip 'FOO-MSI': assuming the platform's 8bit APIC destination", note]


def test_exclude_cpus_beyond_the_kernels_cpus_exclude_nothing():
    """policy.exclude_cpus may name CPUs this guest does not have (one config for many sizes)."""
    config = Config(policy=Policy(exclude_cpus=cpumask.parse_cpulist("4-7")))
    plan = plan_for(make_facts(cpus=4, irqs=[(24, "PCI-MSI", "0-3")]), config)
    assert (plan.exclusion.cpus, plan.exclusion.reasons) == (0, ())
    assert (plan.rows[0].status, plan.rows[0].detail) == ("ok", "")
    edge = plan_for(make_facts(cpus=4, irqs=[(24, "PCI-MSI", "0-3")]), Config(policy=Policy(exclude_cpus=1 << 4)))
    assert edge.exclusion.cpus == 0 and edge.rows[0].detail == ""


def test_a_managed_irq_detail_names_the_boot_fix_without_excluded_cpus():
    facts = make_facts(cpus=256, kernel="6.12.0", irqs=[(40, "PCI-MSI", "252-255", False)])
    row = rows(plan_for(facts, parse_config(BROADCAST_255)))[40]
    assert row.detail == (
        "CPU 255 is unreachable under 8-bit destination; the kernel manages this affinity (read-only file); "
        "fix it at boot with irqaffinity=0-254 or isolcpus=managed_irq,255"
    )
    excluded = parse_config(BROADCAST_255 + '[policy]\nexclude_cpus = "0"\n')
    assert "irqaffinity=1-254 or" in rows(plan_for(facts, excluded))[40].detail
    everything = parse_config(BROADCAST_255 + '[policy]\nexclude_cpus = "0-254"\n')  # nothing left: all reachable
    assert "irqaffinity=0-254 or" in rows(plan_for(facts, everything))[40].detail


def test_unreachable_row_says_nothing_is_safe_to_write():
    config = parse_config('[[controller]]\nchip = "IO-APIC"\ndestination = "8bit"\nreachable_apic_ids = "200"\n')
    row = rows(plan_for(make_facts(cpus=4, irqs=[(4, "IO-APIC", "0-3")]), config))[4]
    assert row.detail == (
        "CPUs 0-3 are unreachable under 8-bit destination; "
        "no online CPU is reachable by this controller: nothing safe to write"
    )


def test_journal_original_is_the_target_and_said_only_when_it_moves_the_irq():
    # The agent wrote 0 over an original 0-1 (CPU 1 was excluded then): the original comes back.
    back = Journal({24: JournalEntry(24, "0-1", "0", "PCI-MSI", "dev24")})
    row = rows(plan_for(make_facts(cpus=4, irqs=[(24, "PCI-MSI", "0")]), journal=back))[24]
    assert (row.status, row.target, row.detail) == (
        "would-change",
        "0-1",
        "back towards the original mask 0-1 (journal)",
    )
    # Its original is what it holds already: nothing to say.
    same = Journal({24: JournalEntry(24, "0-1", "0-1", "PCI-MSI", "dev24")})
    row = rows(plan_for(make_facts(cpus=4, irqs=[(24, "PCI-MSI", "0-1")]), journal=same))[24]
    assert (row.status, row.target, row.detail) == ("ok", "0-1", "")
    # Its original's CPU 3 is offline: back to the online part only.
    offline = Journal({24: JournalEntry(24, "2-3", "0", "PCI-MSI", "dev24")})
    row = rows(plan_for(make_facts(cpus=4, online=0b0111, irqs=[(24, "PCI-MSI", "0")]), journal=offline))[24]
    assert (row.status, row.target) == ("would-change", "2")


def test_spreads_is_a_boolean_per_rule():
    from irqagent.plan import spreads

    config = parse_config(
        '[policy]\nmode = "spread"\n[[rule]]\nirq = "1"\nignore = true\n[[rule]]\nirq = "2"\ncpus = "0"\n'
        '[[rule]]\nirq = "3"\nmode = "restrict"\n[[rule]]\nirq = "4"\nmode = "spread"\n'
    )
    assert [spreads(rule, config) for rule in config.rules] == [False, False, False, True]
    assert spreads(None, config) is True and spreads(None, Config()) is False


def test_spread_skips_irqs_it_cannot_move_and_goes_on():
    """IRQs that are not spread (a rule), not settable, read-only or unreadable take no CPU from the others."""
    config = parse_config('[policy]\nmode = "spread"\n[[rule]]\nirq = "20"\ncpus = "3"\n')
    dev = "0000:00:05.0"
    irqs = [
        IrqFacts(irq=20, chip="PCI-MSI", name="q20", device=dev, affinity_text="0-3"),  # its rule's CPUs
        IrqFacts(irq=21, chip="XT-PIC", name="q21", device=dev, affinity_text="0-3"),  # not settable
        IrqFacts(irq=22, chip="PCI-MSI", name="q22", device=dev, affinity_text="0-3", writable=False),  # managed
        IrqFacts(irq=23, chip="PCI-MSI", name="q23", device=dev, read_error="gone"),  # unreadable
    ] + [IrqFacts(irq=irq, chip="PCI-MSI", name=f"q{irq}", device=dev, affinity_text="0-3") for irq in (24, 25, 26)]
    r = rows(plan_for(make_facts(cpus=4, irqs=irqs), config))
    assert [r[irq].target for irq in (20, 24, 25, 26)] == ["3", "0", "1", "2"]


def test_default_affinity_rows_in_every_state():
    # Invalid text: failed, nothing planned.
    plan = plan_for(make_facts(cpus=4, default_affinity="zz"))
    row = plan.default_affinity
    assert (row.affinity, row.target, row.status) == ("zz", None, "failed") and row.detail.startswith("invalid: ")
    assert plan.default_write is None
    # Already within the allowed CPUs: ok, no detail.
    plan = plan_for(make_facts(cpus=4, default_affinity="f"))
    assert plan.default_affinity == DefaultAffinityRow("0-3", "0-3", "ok", "") and plan.default_write is None
    # Only excluded CPUs in it: nothing online would be left, so it is left alone.
    plan = plan_for(make_facts(cpus=4, default_affinity="1"), Config(policy=Policy(exclude_cpus=0b1)))
    assert plan.default_affinity == DefaultAffinityRow(
        "0", None, "unreachable", "no online CPU would be left: left alone"
    )
    assert plan.default_write is None
    # Excluded CPUs taken out; an offline one in the mask is neither named nor taken out.
    plan = plan_for(make_facts(cpus=4, online=0b0111, default_affinity="f"), Config(policy=Policy(exclude_cpus=0b1)))
    assert plan.default_affinity == DefaultAffinityRow(
        "0-3", "1-3", "would-change", "keeps new IRQs off CPU 0 (unreachable or excluded)"
    )
    write = plan.default_write
    assert (write.irq, write.file, write.current, write.target) == (-1, "default_smp_affinity", 0b1111, 0b1110)
    assert (write.fallback, write.reachable, write.chip, write.name) == (None, 0, "", "")


def test_default_affinity_detail_names_the_unreachable_cpus():
    everything = cpumask.format_hexmask((1 << 256) - 1, 256)
    facts = make_facts(cpus=256, kernel="6.12.0", irqs=[(24, "PCI-MSI", "0")], default_affinity=everything)
    row = plan_for(facts, parse_config(BROADCAST_255)).default_affinity
    assert row.detail == "keeps new IRQs off CPU 255 (unreachable or excluded)"
