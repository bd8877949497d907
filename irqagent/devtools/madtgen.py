"""Build binary MADTs for fixture trees and benchmarks.

:func:`qemu_madt` lays the table out the way QEMU's ``build_madt``
(``hw/i386/acpi-common.c``) does for a q35 guest: one Local APIC entry (type 0) per
vCPU whose APIC ID is below 255 and a Local x2APIC entry (type 9) for the others, in
vCPU order, the IO-APIC at 0xFEC00000, the five interrupt source overrides, then one
NMI entry (type 4, or type 10 when x2APIC entries exist).  The test suite checks that
it reproduces real QEMU 10 tables byte for byte.
"""

from __future__ import annotations

import struct
from typing import Iterable, List, Optional, Sequence

from irqagent import madt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Tuple

    OemFields = Tuple[bytes, bytes, int, bytes, int]  # OEM ID, OEM table ID, OEM revision, creator ID, its revision

QEMU_OEM: OemFields = (b"BOCHS ", b"BXPC    ", 1, b"BXPC", 1)
LOCAL_APIC_ADDRESS = 0xFEE00000
PCAT_COMPAT = 1
# (bus, source IRQ, GSI, flags): IRQ0 -> GSI 2, then the PCI link IRQs level/active-high.
QEMU_SOURCE_OVERRIDES = ((0, 0, 2, 0), (0, 5, 5, 0x0D), (0, 9, 9, 0x0D), (0, 10, 10, 0x0D), (0, 11, 11, 0x0D))


def local_apic(uid: int, apic_id: int, flags: int) -> bytes:
    return madt.LOCAL_APIC.pack(madt.TYPE_LOCAL_APIC, madt.LOCAL_APIC.size, uid, apic_id, flags)


def local_x2apic(uid: int, apic_id: int, flags: int) -> bytes:
    return madt.LOCAL_X2APIC.pack(madt.TYPE_LOCAL_X2APIC, madt.LOCAL_X2APIC.size, 0, apic_id, flags, uid)


def io_apic(ioapic_id: int = 0, address: int = 0xFEC00000, gsi_base: int = 0) -> bytes:
    return madt.IO_APIC.pack(madt.TYPE_IO_APIC, madt.IO_APIC.size, ioapic_id, 0, address, gsi_base)


def build_table(entries: Iterable[bytes], revision: int = 3, oem: OemFields = QEMU_OEM) -> bytes:
    """Header + MADT fields + entries, with length and checksum filled in."""
    body = struct.pack("<II", LOCAL_APIC_ADDRESS, PCAT_COMPAT) + b"".join(entries)
    oem_id, table_id, oem_rev, creator, creator_rev = oem
    length = madt.HEADER.size + len(body)
    header = madt.HEADER.pack(b"APIC", length, revision, 0, oem_id, table_id, oem_rev, creator, creator_rev)
    table = bytearray(header + body)
    table[9] = (-sum(table)) & 0xFF
    return bytes(table)


def qemu_madt(
    apic_ids: Sequence[int],
    enabled: Optional[Sequence[bool]] = None,
    revision: int = 3,
    online_capable: bool = False,
    oem_id: bytes = b"BOCHS ",
) -> bytes:
    """A QEMU q35 MADT for vCPUs with these APIC IDs (``enabled[i]`` False: a hot-plug slot).

    ``online_capable``: mark disabled entries Online Capable (firmware following ACPI 6.3,
    revision 5); QEMU 10 itself writes revision 3 with flags 0 for absent vCPUs.  ``oem_id``:
    another hypervisor's OEM ID, for fixtures of other hypervisors (only the CPU entries matter).
    """
    entries: List[bytes] = []
    for uid, apic_id in enumerate(apic_ids):
        present = enabled is None or enabled[uid]
        flags = madt.FLAG_ENABLED if present else (madt.FLAG_ONLINE_CAPABLE if online_capable else 0)
        entries.append(local_apic(uid, apic_id, flags) if apic_id < 255 else local_x2apic(uid, apic_id, flags))
    entries.append(io_apic())
    for bus, source, gsi, flags in QEMU_SOURCE_OVERRIDES:
        entries.append(struct.pack("<BBBBIH", 2, 10, bus, source, gsi, flags))
    if any(apic_id >= 255 for apic_id in apic_ids):
        entries.append(struct.pack("<BBHIB3x", 10, 12, 0, 0xFFFFFFFF, 1))  # x2APIC NMI: flags, UID (all), LINT1
    else:
        entries.append(struct.pack("<BBBHB", 4, 6, 0xFF, 0, 1))  # Local APIC NMI: UID (all), flags, LINT1
    return build_table(entries, revision, (oem_id,) + QEMU_OEM[1:])
