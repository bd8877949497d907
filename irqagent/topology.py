"""CPUs, their APIC IDs and which are online: ``proc/cpuinfo`` and ``sys/devices/system/cpu``."""

from __future__ import annotations

import re

from irqagent import cpumask
from irqagent.errors import InputError
from irqagent.records import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Dict, List, Mapping, Optional, Tuple

    from irqagent.madt import Madt

_CPUINFO_FIELD = re.compile(r"^(processor|apicid)[ \t]*:[ \t]*([^\n]*?)[ \t]*$", re.M)
_FLAGS = re.compile(r"^flags[ \t]*:([^\n]*)$", re.M)


class CpuinfoError(ValueError):
    """``proc/cpuinfo`` text that cannot be understood."""


def parse_cpuinfo(text: str) -> Dict[int, Optional[int]]:
    """Map each ``processor`` number to its ``apicid`` (None when the block has none)."""
    apic_ids: Dict[int, Optional[int]] = {}
    current: Optional[int] = None
    for match in _CPUINFO_FIELD.finditer(text):
        key, value = match.group(1), match.group(2)
        if not cpumask.is_decimal(value):
            raise CpuinfoError(f"{key} value {value[:20]!r} is not a number")
        limit = cpumask.MAX_CPUS if key == "processor" else 1 << 32  # APIC IDs are 32-bit
        if len(value.lstrip("0")) > len(str(limit)) or int(value) >= limit:  # length first: no 4,300-digit int()
            raise CpuinfoError(f"{key} value {value[:20]!r} is implausibly large (the limit is {limit - 1})")
        number = int(value)
        if key == "processor":
            if number in apic_ids:
                raise CpuinfoError(f"processor {number} appears twice")
            current = number
            apic_ids[number] = None
        else:
            if current is None:
                raise CpuinfoError("apicid before any processor line")
            if apic_ids[current] is not None:
                raise CpuinfoError(f"processor {current} has two apicid lines")
            apic_ids[current] = number
    if not apic_ids:
        raise CpuinfoError("no processor entries")
    return apic_ids


def has_x2apic_flag(text: str) -> bool:
    """Whether the first CPU's ``flags`` include ``x2apic`` (the CPU supports it)."""
    match = _FLAGS.search(text)
    return match is not None and "x2apic" in match.group(1).split()


@frozen
class Topology:
    """Online CPUs with their APIC IDs, and the possible CPU range."""

    apic_ids: Mapping[int, int]  # online CPU -> APIC ID
    online: int  # mask
    possible: int  # mask
    nr_cpu_ids: int  # CPU numbers at or beyond this are invalid in any mask
    x2apic_capable: bool  # the CPU offers x2APIC (cpuinfo flag): not what the kernel runs
    present: int = 0  # mask (sys/devices/system/cpu/present; the online CPUs when absent)

    @property
    def max_apic_id(self) -> int:
        return max(self.apic_ids.values(), default=0)


def build_topology(
    cpuinfo_text: str,
    online_text: Optional[str],
    possible_text: Optional[str],
    present_text: Optional[str] = None,
) -> Topology:
    """Combine cpuinfo with the online/possible cpulists; raise InputError when inconsistent."""
    try:
        listed = parse_cpuinfo(cpuinfo_text)
    except CpuinfoError as exc:
        raise InputError(f"proc/cpuinfo: {exc}") from None
    nr_cpu_ids: Optional[int] = None
    possible: Optional[int] = None
    if possible_text is not None:
        try:
            possible = cpumask.parse_cpulist(possible_text)
        except cpumask.CpumaskError as exc:
            raise InputError(f"sys/devices/system/cpu/possible: {exc}") from None
        if possible == 0:
            raise InputError("sys/devices/system/cpu/possible: empty")
        nr_cpu_ids = possible.bit_length()
    if online_text is not None:
        try:
            online = cpumask.parse_cpulist(online_text, nr_cpu_ids)
        except cpumask.CpumaskError as exc:
            raise InputError(f"sys/devices/system/cpu/online: {exc}") from None
    else:
        online = cpumask.mask_of(listed)
    if nr_cpu_ids is None:
        nr_cpu_ids = max(online.bit_length(), max(listed) + 1)
        possible = (1 << nr_cpu_ids) - 1
    assert possible is not None
    if online == 0:
        raise InputError("no online CPU (sys/devices/system/cpu/online is empty)")
    apic_ids: Dict[int, int] = {}
    for cpu in cpumask.iter_cpus(online):
        apic = listed.get(cpu)
        if apic is None:
            where = "is not in" if cpu not in listed else "has no apicid in"
            raise InputError(f"online CPU {cpu} {where} proc/cpuinfo: cannot learn its APIC ID (is this an x86 guest?)")
        apic_ids[cpu] = apic
    present = online
    if present_text is not None:
        try:
            present = cpumask.parse_cpulist(present_text, nr_cpu_ids) | online
        except cpumask.CpumaskError as exc:
            raise InputError(f"sys/devices/system/cpu/present: {exc}") from None
    return Topology(
        apic_ids=apic_ids,
        online=online,
        possible=possible,
        nr_cpu_ids=nr_cpu_ids,
        x2apic_capable=has_x2apic_flag(cpuinfo_text),
        present=present,
    )


@frozen
class FirmwareCpu:
    """A vCPU the MADT describes that is not online."""

    cpu: Optional[int]  # the CPU number the kernel registered it under; None: never registered
    apic_id: int
    slot: bool  # a hot-plug slot (not enabled in the MADT), not a configured vCPU


def offline_cpus(topology: Topology, madt: Optional[Madt]) -> Tuple[FirmwareCpu, ...]:
    """The MADT's vCPUs that are not online, with the CPU numbers the kernel gave them.

    Linux numbers present CPUs in MADT order, the boot CPU first (arch/x86/kernel/cpu/topology.c:
    topo_register_apic; generic_processor_info before 6.9), so enabled entries that are not
    online pair, in table order, with the present-but-offline CPU numbers in ascending order.
    Hot-plug slots get the possible-but-not-present numbers in APIC ID order
    (topology_init_possible_cpus).  An entry left without a number was never registered.
    """
    if madt is None:
        return ()
    online_apics = set(topology.apic_ids.values())
    present_offline = cpumask.iter_cpus(topology.present & ~topology.online)
    absent = cpumask.iter_cpus(topology.possible & ~topology.present & ~topology.online)
    result: List[FirmwareCpu] = []
    slots = []
    for entry in madt.cpus:
        if entry.apic_id in online_apics:
            continue
        if entry.enabled:
            result.append(FirmwareCpu(next(present_offline, None), entry.apic_id, False))
        elif madt.is_hotplug_slot(entry):
            slots.append(entry.apic_id)
    for apic_id in sorted(slots):
        result.append(FirmwareCpu(next(absent, None), apic_id, True))
    return tuple(result)


def known_apic_ids(topology: Topology, offline: Tuple[FirmwareCpu, ...]) -> Dict[int, int]:
    """CPU number -> APIC ID for every CPU whose APIC ID is known: online ones (cpuinfo),
    then registered offline ones (MADT)."""
    known = dict(topology.apic_ids)
    for entry in offline:
        if entry.cpu is not None:
            known.setdefault(entry.cpu, entry.apic_id)
    return known
