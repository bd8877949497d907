import pytest
from hypothesis import given, settings, strategies as st

from irqagent import cpumask
from irqagent.policy import SpreadItem, candidates_for, cmdline_exclusion, spread


def fmt(mask):
    return cpumask.format_cpulist(mask)


def test_isolcpus_with_flags_nohz_full_and_irqaffinity():
    online = (1 << 16) - 1
    result = cmdline_exclusion("ro isolcpus=managed_irq,domain,2-3 nohz_full=4 irqaffinity=0-11", online, 16)
    assert fmt(result.cpus) == "2-4,12-15"
    assert result.reasons == ("isolcpus=managed_irq,domain,2-3", "nohz_full=4", "irqaffinity=0-11")


def test_bad_or_absent_boot_parameters_are_ignored():
    assert cmdline_exclusion("isolcpus=bogus nohz_full= quiet", 15, 4).cpus == 0
    assert cmdline_exclusion("isolcpus=100-200", 15, 4).cpus == 0  # beyond nr_cpu_ids


def test_spread_gives_a_device_distinct_cpus_numa_local_first():
    nodes = {0: 0x0F, 1: 0xF0}
    items = [SpreadItem(irq, "dev1", 1, 0xFF) for irq in range(24, 28)] + [SpreadItem(30, "dev2", 0, 0xFF)]
    result = spread(items, nodes)
    assert sorted(fmt(result[irq]) for irq in range(24, 28)) == ["4", "5", "6", "7"]
    assert fmt(result[30]) == "0"


def test_spread_is_deterministic_regardless_of_input_order():
    items = [SpreadItem(irq, f"dev{irq % 3}", None, 0xFFF) for irq in range(40)]
    assert spread(items, {}) == spread(list(reversed(items)), {})


equal_items = st.builds(
    lambda n, cpus, groups: [SpreadItem(irq, f"dev{irq % groups}", None, (1 << cpus) - 1) for irq in range(n)],
    st.integers(1, 80),
    st.integers(1, 32),
    st.integers(1, 6),
)


@settings(max_examples=60)
@given(equal_items)
def test_spread_invariants(items):
    result = spread(items, {})
    load = {}
    for item in items:
        target = result[item.irq]
        assert cpumask.count(target) == 1 and target & item.allowed == target
        load[target] = load.get(target, 0) + 1
    cpus = cpumask.count(items[0].allowed)
    counts = list(load.values()) + [0] * (cpus - len(load))
    assert max(counts) - min(counts) <= 1


def test_spread_skips_items_with_no_allowed_cpu():
    assert spread([SpreadItem(1, "d", None, 0)], {}) == {}


def naive_spread(items, numa_nodes):
    """The definition, O(IRQs x CPUs): least load, then not used by the device, then lowest CPU."""
    load, used, result = {}, {}, {}
    for item in sorted(items, key=lambda i: (i.group, i.irq)):
        if not item.allowed:
            continue
        candidates = candidates_for(item, numa_nodes)
        mine = used.setdefault(item.group, set())
        best = min(cpumask.iter_cpus(candidates), key=lambda cpu: (load.get(cpu, 0), cpu in mine, cpu))
        load[best] = load.get(best, 0) + 1
        mine.add(best)
        result[item.irq] = 1 << best
    return result


mixed_items = st.lists(
    st.builds(
        SpreadItem,
        st.integers(0, 200),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from([None, 0, 1]),
        st.integers(0, (1 << 24) - 1),
    ),
    max_size=60,
    unique_by=lambda item: item.irq,
)


@settings(max_examples=150)
@given(mixed_items)
def test_heap_spread_equals_the_definition(items):
    nodes = {0: 0x000FFF, 1: 0xFFF000}
    assert spread(items, nodes) == naive_spread(items, nodes)


def test_spread_at_32768_cpus_is_fast():
    import time

    items = [SpreadItem(irq, f"dev{irq // 64}", None, (1 << 32768) - 1) for irq in range(16384)]
    started = time.monotonic()
    result = spread(items, {})
    assert time.monotonic() - started < 10
    assert len(set(result.values())) == 16384  # enough CPUs: every IRQ its own


def test_boot_parameters_naming_cpus_beyond_nr_cpu_ids_are_ignored_like_the_kernel():
    """housekeeping_setup(): "incorrect CPU range" -> the whole parameter is ignored."""
    assert cmdline_exclusion("isolcpus=2-5 nohz_full=1", 15, 4).cpus == 0b0010
    assert cmdline_exclusion("isolcpus=0-16777215:1/2 nohz_full=" + "9" * 5000, 15, 4).cpus == 0


# -- added for the mutation run (tools/mutation.py) ---------------------------------------------------


def test_isolcpus_skips_unknown_flags_and_keeps_every_cpu():
    # kernel/sched/isolation.c housekeeping_isolcpus_setup: "isolcpus: Skipped unknown flag" for an
    # alphabetic sub-parameter, then the cpulist.
    assert cmdline_exclusion("isolcpus=foo,2-3", 0xFF, 8).cpus == 0b1100
    assert cmdline_exclusion("isolcpus=domain,2,5", 0xFF, 8).cpus == 0b100100
    assert cmdline_exclusion("isolcpus=managed_irq,nohz,domain,1", 0xFF, 8).reasons == (
        "isolcpus=managed_irq,nohz,domain,1",
    )


def test_a_boot_value_that_is_not_a_cpulist_is_ignored_whole():
    # housekeeping_setup: cpulist_parse of the whole value fails on "2-3=x": the parameter is ignored.
    assert cmdline_exclusion("nohz_full=2-3=x", 0xFF, 8).cpus == 0


def test_an_unknown_numa_node_leaves_every_allowed_cpu():
    item = SpreadItem(irq=30, group="nvme0", node=5, allowed=0b1111)
    assert candidates_for(item, {0: 0b0011, 1: 0b1100}) == 0b1111
    assert candidates_for(SpreadItem(irq=30, group="nvme0", node=1, allowed=0b0111), {1: 0b1100}) == 0b0100


def test_spread_prefers_a_cpu_the_device_does_not_use_at_the_same_load():
    # CPU 1 carries "a"'s IRQ; "b" takes CPU 0, then CPU 2 (both idle); its third IRQ finds CPUs 0-2 at one
    # IRQ each and takes CPU 1, the one it does not use yet, not CPU 0 (lowest, but its own).
    items = [SpreadItem(1, "a", None, 0b010)] + [SpreadItem(irq, "b", None, 0b111) for irq in (10, 11, 12)]
    assert spread(items, {}) == {1: 1 << 1, 10: 1 << 0, 11: 1 << 2, 12: 1 << 1}


def test_spread_with_loads_raised_through_another_candidate_set():
    # "b" may use CPU 1 only and stacks two IRQs there; "c" (CPUs 0-1) then sees CPU 1 at two IRQs, not
    # the zero it had when "a" first looked at CPUs 0-1, and takes CPU 0 (one IRQ).
    items = [
        SpreadItem(1, "a", None, 0b11),
        SpreadItem(2, "b", None, 0b10),
        SpreadItem(3, "b", None, 0b10),
        SpreadItem(4, "c", None, 0b11),
        SpreadItem(5, "c", None, 0b11),
    ]
    # "c"'s second IRQ finds CPUs 0 and 1 at two IRQs each and takes CPU 1, which it does not use yet.
    assert spread(items, {}) == {1: 1 << 0, 2: 1 << 1, 3: 1 << 1, 4: 1 << 0, 5: 1 << 1}


def test_policy_values_are_immutable():
    from irqagent.records import FrozenError

    with pytest.raises(FrozenError):
        cmdline_exclusion("isolcpus=1", 0xF, 4).cpus = 0  # type: ignore[misc]
    with pytest.raises(FrozenError):
        SpreadItem(1, "a", None, 1).allowed = 3  # type: ignore[misc]
