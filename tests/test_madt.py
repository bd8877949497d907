"""The MADT parser, on real QEMU 10 tables and on tables built to the same layout."""

import struct
import time

import pytest
from hypothesis import given, settings, strategies as st

from irqagent.devtools.madtgen import build_table, local_apic, local_x2apic, qemu_madt
from irqagent.madt import MadtError, parse_madt

from conftest import unpack_real_guest


@pytest.fixture(scope="module")
def real_tables(tmp_path_factory):
    tables = {}
    for name in ("R1", "T4"):
        root = unpack_real_guest(name, str(tmp_path_factory.mktemp(name)))
        with open(f"{root}/sys/firmware/acpi/tables/APIC", "rb") as handle:
            tables[name] = handle.read()
    return tables


def test_real_288_vcpu_table(real_tables):
    # R1: QEMU 10, -smp 288: "CPU topo: Allowing 288 present CPUs plus 0 hotplug CPUs"; 2686 bytes,
    # revision 3, OEM "BOCHS", Local APIC entries for APIC IDs 0-254 and x2APIC entries for 255-287.
    madt = parse_madt(real_tables["R1"])
    assert (madt.revision, madt.oem_id, len(madt.cpus)) == (3, "BOCHS", 288)
    assert [cpu.apic_id for cpu in madt.cpus] == list(range(288))
    assert all(cpu.enabled and not cpu.online_capable for cpu in madt.cpus)
    assert {cpu.entry_type for cpu in madt.cpus[:255]} == {0} and {cpu.entry_type for cpu in madt.cpus[255:]} == {9}
    assert [(io.ioapic_id, io.address, io.gsi_base) for io in madt.ioapics] == [(0, 0xFEC00000, 0)]


def test_real_4_vcpu_table(real_tables):
    madt = parse_madt(real_tables["T4"])
    assert [(cpu.apic_id, cpu.uid, cpu.flags) for cpu in madt.cpus] == [(0, 0, 1), (1, 1, 1), (2, 2, 1), (3, 3, 1)]


def test_builder_reproduces_the_real_tables_byte_for_byte(real_tables):
    assert qemu_madt(range(288)) == real_tables["R1"]
    assert qemu_madt(range(4)) == real_tables["T4"]


def test_checksum_and_length_are_verified(real_tables):
    good = bytearray(real_tables["T4"])
    bad_sum = bytearray(good)
    bad_sum[50] ^= 1
    with pytest.raises(MadtError, match="checksum"):
        parse_madt(bytes(bad_sum))
    with pytest.raises(MadtError, match="header says 144 bytes"):
        parse_madt(bytes(good[:100]))
    with pytest.raises(MadtError, match="truncated"):
        parse_madt(bytes(good[:20]))
    with pytest.raises(MadtError, match="signature"):
        parse_madt(b"FACP" + bytes(good[4:]))


def test_an_entry_running_past_the_end_is_an_error():
    table = bytearray(build_table([local_apic(0, 0, 1), bytes([9, 40, 0, 0])]))
    with pytest.raises(MadtError, match="bad length 40"):
        parse_madt(bytes(table))


def test_flags_revision_5_online_capable_and_disabled():
    table = qemu_madt([0, 1, 300, 301], enabled=[True, True, False, False], revision=5, online_capable=True)
    madt = parse_madt(table)
    assert [(cpu.apic_id, cpu.enabled, cpu.online_capable) for cpu in madt.cpus] == [
        (0, True, False),
        (1, True, False),
        (300, False, True),
        (301, False, True),
    ]
    assert [madt.is_hotplug_slot(cpu) for cpu in madt.cpus] == [False, False, True, True]


def test_before_revision_5_every_disabled_entry_is_a_slot():
    # acpi_is_processor_usable: MADT revision < 5 has no Online Capable flag; disabled = hot-pluggable.
    madt = parse_madt(qemu_madt([0, 256], enabled=[True, False], revision=3))
    assert madt.is_hotplug_slot(madt.cpus[1])
    rev5 = parse_madt(qemu_madt([0, 256], enabled=[True, False], revision=5, online_capable=False))
    assert not rev5.is_hotplug_slot(rev5.cpus[1])


def test_invalid_ids_are_skipped_as_linux_does():
    # acpi_parse_lapic ignores APIC ID 0xFF; acpi_parse_x2apic ignores 0xFFFFFFFF.
    madt = parse_madt(build_table([local_apic(0, 0, 1), local_apic(1, 0xFF, 1), local_x2apic(2, 0xFFFFFFFF, 1)]))
    assert [cpu.apic_id for cpu in madt.cpus] == [0] and madt.skipped == 2


def test_a_repeated_apic_id_keeps_the_first_entry():
    madt = parse_madt(build_table([local_apic(0, 0, 1), local_apic(1, 0, 0), local_x2apic(2, 300, 1)]))
    assert [(cpu.apic_id, cpu.uid) for cpu in madt.cpus] == [(0, 0), (300, 2)] and madt.duplicates == (0,)


def test_32768_entries_parse_in_under_50_ms():
    table = qemu_madt(range(32768))
    best = min(_timed(parse_madt, table) for _ in range(5))
    assert best < 0.050, f"{best * 1000:.1f} ms"
    assert len(parse_madt(table).cpus) == 32768


def _timed(function, argument) -> float:
    started = time.perf_counter()
    function(argument)
    return time.perf_counter() - started


@settings(max_examples=300, deadline=1000)
@given(st.binary(max_size=600))
def test_any_bytes_parse_or_raise_madt_error(data):
    try:
        madt = parse_madt(data)
    except MadtError:
        return
    assert all(cpu.apic_id not in (0xFF, 0xFFFFFFFF) or cpu.entry_type == 9 for cpu in madt.cpus)


@settings(max_examples=300, deadline=1000)
@given(st.integers(0, 143), st.integers(0, 255), st.booleans())
def test_a_damaged_real_table_never_escapes_madt_error(offset, value, fix_checksum):
    table = bytearray(qemu_madt(range(4)))
    table[offset] = value
    if fix_checksum:
        table[9] = (table[9] - sum(table)) & 0xFF
    try:
        madt = parse_madt(bytes(table))
    except MadtError:
        return
    assert len(madt.cpus) <= 4


@settings(max_examples=100, deadline=1000)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)), max_size=40))
def test_random_entries_with_a_valid_header(entries):
    body = b"".join(struct.pack("<BB", kind, length) + bytes(max(0, length - 2)) for kind, length in entries)
    try:
        parse_madt(build_table([body]))
    except MadtError:
        pass


# Added for the mutation run (tools/mutation.py). Entries are literal bytes, as the ACPI specification
# lays them out (MADT, 5.2.12): type 0 Processor Local APIC = type, length 8, UID, APIC ID, flags u32.


def _lapic(uid: int, apic_id: int, flags: int) -> bytes:
    return bytes([0, 8, uid, apic_id]) + flags.to_bytes(4, "little")


def test_flag_bits_enabled_is_bit_0_online_capable_bit_1():
    madt = parse_madt(build_table([_lapic(0, 0, 0b01), _lapic(1, 1, 0b10), _lapic(2, 2, 0b100)], revision=5))
    assert [(cpu.enabled, cpu.online_capable) for cpu in madt.cpus] == [(True, False), (False, True), (False, False)]
    assert [madt.is_hotplug_slot(cpu) for cpu in madt.cpus] == [False, True, False]


def test_a_repeated_apic_id_is_found_by_apic_id_not_uid():
    madt = parse_madt(build_table([_lapic(0, 5, 1), _lapic(1, 5, 1), _lapic(2, 0, 1)]))
    assert [(cpu.uid, cpu.apic_id) for cpu in madt.cpus] == [(0, 5), (2, 0)] and madt.duplicates == (5,)


def test_header_only_table_and_the_smallest_entry():
    # 44 bytes (36-byte header, local APIC address, flags) is a MADT without entries.
    assert parse_madt(build_table([])).cpus == ()
    # An entry of another type, 2 bytes long (type, length), ends the table exactly: skipped.
    madt = parse_madt(build_table([_lapic(0, 0, 1), bytes([0x7F, 2])]))
    assert [cpu.apic_id for cpu in madt.cpus] == [0]
    with pytest.raises(MadtError, match="bad length 1"):
        parse_madt(build_table([_lapic(0, 0, 1), bytes([0x7F, 1])]))


def test_a_lone_trailing_byte_is_a_cut_off_entry():
    with pytest.raises(MadtError, match="entry at offset 52 is cut off"):
        parse_madt(build_table([_lapic(0, 0, 1), bytes([0])]))


def test_only_nul_and_space_pad_the_oem_id():
    oem = (b"ABCDEX", b"TABLE   ", 1, b"TEST", 1)
    assert parse_madt(build_table([], oem=oem)).oem_id == "ABCDEX"
    assert parse_madt(build_table([], oem=(b"Xen\0\0\0",) + oem[1:])).oem_id == "Xen"


def test_a_table_of_16_mib_is_the_largest_read():
    # 16,777,216 bytes: the header, then entries of an unknown type (skipped), 255 bytes each.
    size = 1 << 24
    filler = size - 44
    last = filler % 255
    entries = [bytes([0x7F, 255]) + bytes(253)] * (filler // 255) + [bytes([0x7F, last]) + bytes(last - 2)]
    table = build_table(entries)
    assert len(table) == 16777216 and parse_madt(table).cpus == ()
    with pytest.raises(MadtError, match="16777217 bytes is larger than any MADT"):
        parse_madt(table + b"\0")


def test_parsed_tables_are_immutable(real_tables):
    from irqagent.records import FrozenError

    madt = parse_madt(real_tables["T4"])
    with pytest.raises(FrozenError):
        madt.revision = 5  # type: ignore[misc]
    with pytest.raises(FrozenError):
        madt.ioapics[0].gsi_base = 24  # type: ignore[misc]


@pytest.mark.parametrize(
    "entry, message",
    [
        (bytes([9, 12]) + bytes(10), "Local x2APIC entry at offset 44 is 12 bytes, not 16"),
        (bytes([0, 6]) + bytes(4), "Local APIC entry at offset 44 is 6 bytes, not 8"),
        (bytes([1, 8]) + bytes(6), "IO-APIC entry at offset 44 is 8 bytes, not 12"),
    ],
)
def test_a_short_entry_of_a_known_type_is_an_error(entry, message):
    # Followed by a whole Local APIC entry: a parser that read past the short entry would find bytes to read.
    with pytest.raises(MadtError) as info:
        parse_madt(build_table([entry, _lapic(0, 0, 1), _lapic(1, 1, 1)]))
    assert str(info.value) == message
