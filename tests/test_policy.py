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
