"""The ACPI MADT (``sys/firmware/acpi/tables/APIC``): every vCPU the firmware configured.

Pure parsing of the binary table, as the ACPI specification lays it out and Linux reads it
(``arch/x86/kernel/acpi/boot.c``: ``acpi_parse_lapic``, ``acpi_parse_x2apic``,
``acpi_parse_ioapic``):

* a 36-byte ACPI header (signature ``APIC``, length u32, revision u8, checksum u8 — all
  bytes of the table sum to 0 mod 256 — OEM ID, table ID, OEM revision, creator), then
  the local APIC address (u32) and flags (u32);
* entries ``(type u8, length u8, ...)``: type 0 Processor Local APIC (ACPI UID u8,
  APIC ID u8, flags u32), type 1 IO-APIC (ID u8, reserved, address u32, GSI base u32),
  type 9 Processor Local x2APIC (reserved u16, x2APIC ID u32, flags u32, UID u32).
  Flag bit 0 is Enabled, bit 1 Online Capable (ACPI 6.3, MADT revision 5 and later).

Linux skips a type 0 entry with APIC ID 0xFF and a type 9 entry with 0xFFFFFFFF
(invalid IDs); so does this parser.  Anything malformed raises :class:`MadtError`.
"""

from __future__ import annotations

import struct
from collections import namedtuple

from irqagent.records import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import List, NamedTuple, Tuple

HEADER = struct.Struct("<4sIBB6s8sI4sI")  # 36 bytes
MADT_FIELDS = struct.Struct("<II")  # local APIC address, flags
ENTRIES_OFFSET = HEADER.size + MADT_FIELDS.size  # 44
LOCAL_APIC = struct.Struct("<BBBBI")  # type 0, len 8: type, length, uid, apic id, flags
IO_APIC = struct.Struct("<BBBBII")  # type 1, len 12: type, length, id, reserved, address, gsi base
LOCAL_X2APIC = struct.Struct("<BBHIII")  # type 9, len 16: type, length, reserved, apic id, flags, uid

TYPE_LOCAL_APIC = 0
TYPE_IO_APIC = 1
TYPE_LOCAL_X2APIC = 9
FLAG_ENABLED = 1 << 0
FLAG_ONLINE_CAPABLE = 1 << 1
ONLINE_CAPABLE_REVISION = 5  # ACPI 6.3: the Online Capable flag exists from this revision on
MAX_TABLE_BYTES = 1 << 24  # 16 MiB: a million x2APIC entries; real tables are a few hundred KiB at most


class MadtError(ValueError):
    """A MADT that cannot be trusted: truncated, corrupt or not a MADT at all."""


if TYPE_CHECKING:

    class _CpuEntry(NamedTuple):
        apic_id: int
        uid: int
        flags: int
        entry_type: int

else:  # the same named tuple, without importing typing at run time (start-up time)
    _CpuEntry = namedtuple("_CpuEntry", ("apic_id", "uid", "flags", "entry_type"))


class MadtCpu(_CpuEntry):
    """One Processor Local APIC (type 0) or Local x2APIC (type 9) entry (a named tuple:
    32,768 of them are built in a few milliseconds)."""

    __slots__ = ()

    @property
    def enabled(self) -> bool:
        return bool(self.flags & FLAG_ENABLED)

    @property
    def online_capable(self) -> bool:
        return bool(self.flags & FLAG_ONLINE_CAPABLE)


@frozen
class MadtIoApic:
    ioapic_id: int
    address: int
    gsi_base: int


@frozen
class Madt:
    revision: int
    oem_id: str
    cpus: Tuple[MadtCpu, ...]  # in table order (Linux numbers present CPUs in this order)
    ioapics: Tuple[MadtIoApic, ...]
    skipped: int  # entries with an invalid APIC ID (0xFF / 0xFFFFFFFF), as Linux skips them
    duplicates: Tuple[int, ...]  # APIC IDs listed more than once (Linux keeps the first)

    def is_hotplug_slot(self, cpu: MadtCpu) -> bool:
        """A disabled entry Linux counts as a possible (hot-pluggable) CPU.

        MADT revision 5+ marks such slots Online Capable; before that, every disabled
        entry is one (``acpi_is_processor_usable`` in arch/x86/kernel/acpi/boot.c).
        """
        if cpu.enabled:
            return False
        return cpu.online_capable if self.revision >= ONLINE_CAPABLE_REVISION else True


def parse_madt(data: bytes) -> Madt:
    """Parse and verify a MADT; raise :class:`MadtError` with the reason when it is not sound."""
    if len(data) > MAX_TABLE_BYTES:
        raise MadtError(f"{len(data)} bytes is larger than any MADT ({MAX_TABLE_BYTES} at most)")
    if len(data) < ENTRIES_OFFSET:
        raise MadtError(f"truncated: {len(data)} bytes, the header alone is {ENTRIES_OFFSET}")
    signature, length, revision, _checksum, oem_id, _table_id, _oem_rev, _creator, _creator_rev = HEADER.unpack_from(
        data, 0
    )
    if signature != b"APIC":
        raise MadtError(f"signature {signature!r} is not 'APIC'")
    if length != len(data):
        raise MadtError(f"the header says {length} bytes, the table has {len(data)}")
    if sum(data) & 0xFF:
        raise MadtError("checksum mismatch: the bytes do not sum to 0 mod 256")
    raw: List[Tuple[int, int, int, int]] = []  # (apic_id, uid, flags, type) in table order
    ioapics: List[MadtIoApic] = []
    skipped = 0
    unpack_lapic, unpack_x2apic = LOCAL_APIC.unpack_from, LOCAL_X2APIC.unpack_from
    offset = ENTRIES_OFFSET
    end = len(data)
    while offset < end:
        if offset + 2 > end:
            raise MadtError(f"entry at offset {offset} is cut off")
        entry_type, entry_length = data[offset], data[offset + 1]
        if entry_length < 2 or offset + entry_length > end:
            raise MadtError(f"entry at offset {offset} has a bad length {entry_length}")
        if entry_type == TYPE_LOCAL_X2APIC:
            if entry_length < 16:
                raise MadtError(f"Local x2APIC entry at offset {offset} is {entry_length} bytes, not 16")
            _t, _l, _reserved, apic_id, flags, uid = unpack_x2apic(data, offset)
            if apic_id == 0xFFFFFFFF:
                skipped += 1
            else:
                raw.append((apic_id, uid, flags, TYPE_LOCAL_X2APIC))
        elif entry_type == TYPE_LOCAL_APIC:
            if entry_length < 8:
                raise MadtError(f"Local APIC entry at offset {offset} is {entry_length} bytes, not 8")
            _t, _l, uid, apic_id, flags = unpack_lapic(data, offset)
            if apic_id == 0xFF:
                skipped += 1
            else:
                raw.append((apic_id, uid, flags, TYPE_LOCAL_APIC))
        elif entry_type == TYPE_IO_APIC:
            if entry_length < 12:
                raise MadtError(f"IO-APIC entry at offset {offset} is {entry_length} bytes, not 12")
            _t, _l, ioapic_id, _reserved, address, gsi_base = IO_APIC.unpack_from(data, offset)
            ioapics.append(MadtIoApic(ioapic_id, address, gsi_base))
        offset += entry_length
    cpus, duplicates = _first_of_each(raw)
    return Madt(
        revision=revision,
        oem_id=oem_id.rstrip(b"\0 ").decode("ascii", "replace"),
        cpus=cpus,
        ioapics=tuple(ioapics),
        skipped=skipped,
        duplicates=tuple(duplicates),
    )


def _first_of_each(raw: List[Tuple[int, int, int, int]]) -> Tuple[Tuple[MadtCpu, ...], Tuple[int, ...]]:
    """The entries with their first APIC ID occurrence (Linux ignores a repeated APIC ID), and the repeats."""
    make = MadtCpu._make
    if len({entry[0] for entry in raw}) == len(raw):
        return tuple(map(make, raw)), ()
    seen = set()
    cpus, duplicates = [], []
    for entry in raw:
        if entry[0] in seen:
            duplicates.append(entry[0])
        else:
            seen.add(entry[0])
            cpus.append(make(entry))
    return tuple(cpus), tuple(duplicates)
