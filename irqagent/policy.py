"""Where interrupts *should* go: excluded CPUs (config and kernel command line) and spreading.

Pure functions.  ``restrict`` keeps each IRQ's own mask minus what is not allowed;
``spread`` gives each device's queue IRQs one distinct CPU each, NUMA-local first.
"""

from __future__ import annotations

import heapq
import re

from irqagent import cpumask
from irqagent.records import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple

CMDLINE_FLAGS = ("nohz", "domain", "managed_irq")


@frozen
class Exclusion:
    cpus: int  # CPUs no IRQ should target
    reasons: Tuple[str, ...]  # one phrase per source, e.g. "isolcpus=2-3"


def _cmdline_values(cmdline: str, key: str) -> List[str]:
    return [token.split("=", 1)[1] for token in cmdline.split() if token.startswith(key + "=")]


def cmdline_exclusion(cmdline: str, online: int, nr_cpu_ids: int) -> Exclusion:
    """CPUs the kernel command line keeps free of device interrupts."""
    cpus = 0
    reasons = []
    for value in _cmdline_values(cmdline, "isolcpus"):
        parts = value.split(",")
        while parts and (parts[0] in CMDLINE_FLAGS or not re.match(r"^[0-9]", parts[0])):
            parts.pop(0)
        mask = _lenient_cpulist(",".join(parts), nr_cpu_ids)
        if mask:
            cpus |= mask
            reasons.append(f"isolcpus={value}")
    for value in _cmdline_values(cmdline, "nohz_full"):
        mask = _lenient_cpulist(value, nr_cpu_ids)
        if mask:
            cpus |= mask
            reasons.append(f"nohz_full={value}")
    for value in _cmdline_values(cmdline, "irqaffinity"):
        mask = _lenient_cpulist(value, nr_cpu_ids)
        if mask:
            outside = online & ~mask
            if outside:
                cpus |= outside
                reasons.append(f"irqaffinity={value}")
    return Exclusion(cpus, tuple(reasons))


def _lenient_cpulist(text: str, nr_cpu_ids: int) -> int:
    """The kernel ignores a bad boot parameter, and one naming a CPU at or beyond nr_cpu_ids
    (housekeeping: "incorrect CPU range"); so do we.  Bounded by nr_cpu_ids, a stride costs
    at most that many positions."""
    try:
        return cpumask.parse_cpulist(text, nr_cpu_ids)
    except cpumask.CpumaskError:
        return 0


@frozen
class SpreadItem:
    irq: int
    group: str  # IRQs of one device spread together
    node: Optional[int]
    allowed: int  # CPUs this IRQ may take


def candidates_for(item: SpreadItem, numa_nodes: Mapping[int, int]) -> int:
    """The allowed CPUs on the IRQ's NUMA node, or all allowed CPUs when none is local."""
    local = numa_nodes.get(item.node, 0) if item.node is not None else 0
    return item.allowed & local or item.allowed


def _least_loaded(heap: List[Tuple[int, int]], load: Mapping[int, int], used: Set[int]) -> int:
    """Pop the CPU with the fewest IRQs (then: not used by this device, then lowest number).

    Heap entries may be stale (another candidate set raised a CPU's load since): such
    an entry is pushed back with the CPU's current load.  Loads only grow, so the first
    fresh entry has the least load.
    """
    level: Optional[int] = None
    passed: List[int] = []  # fresh entries at the least load, used by this device
    chosen: Optional[int] = None
    while heap:
        stored, cpu = heap[0]
        if level is not None and stored > level:
            break
        heapq.heappop(heap)
        if stored != load.get(cpu, 0):
            heapq.heappush(heap, (load.get(cpu, 0), cpu))
            continue
        level = stored
        if cpu not in used:
            chosen = cpu
            break
        passed.append(cpu)
    if chosen is None:
        chosen = passed.pop(0)
    for cpu in passed:
        heapq.heappush(heap, (load.get(cpu, 0), cpu))  # fresh entries: their load is level
    return chosen


def spread(items: Sequence[SpreadItem], numa_nodes: Mapping[int, int]) -> Dict[int, int]:
    """One CPU per IRQ: distinct within a device, NUMA-local first, balanced, deterministic.

    IRQs are taken in (device, IRQ number) order; each takes, among its allowed CPUs
    on its NUMA node (or all allowed CPUs when none is local), the CPU with the
    fewest IRQs so far; among those, one its device does not use yet; then the
    lowest number.  IRQs with the same allowed CPUs end up balanced within one.
    The result depends only on the input, so a second run plans the same.
    """
    load: Dict[int, int] = {}
    heaps: Dict[int, List[Tuple[int, int]]] = {}  # candidate mask -> heap of (load when pushed, cpu)
    used_by_group: Dict[str, Set[int]] = {}
    result: Dict[int, int] = {}
    for item in sorted(items, key=lambda i: (i.group, i.irq)):
        if not item.allowed:
            continue
        candidates = candidates_for(item, numa_nodes)
        heap = heaps.get(candidates)
        if heap is None:
            heap = heaps[candidates] = [(load.get(cpu, 0), cpu) for cpu in cpumask.iter_cpus(candidates)]
            heapq.heapify(heap)
        used = used_by_group.setdefault(item.group, set())
        best = _least_loaded(heap, load, used)
        load[best] = load.get(best, 0) + 1
        heapq.heappush(heap, (load[best], best))
        used.add(best)
        result[item.irq] = 1 << best
    return result
