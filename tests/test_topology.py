import os

import pytest
from hypothesis import given, strategies as st

from irqagent.devtools.gentree import TreeSpec, _cpuinfo
from irqagent.devtools.madtgen import qemu_madt
from irqagent.errors import InputError
from irqagent.madt import parse_madt
from irqagent.topology import (
    CpuinfoError,
    FirmwareCpu,
    Topology,
    build_topology,
    has_x2apic_flag,
    known_apic_ids,
    offline_cpus,
    parse_cpuinfo,
)

from conftest import FIXTURES

REAL_CPUINFO = os.path.join(FIXTURES, "real-files", "cpuinfo-kvm-2cpu")


def real_cpuinfo() -> str:
    with open(REAL_CPUINFO) as handle:
        return handle.read()


def test_real_cpuinfo_from_this_machine():
    assert parse_cpuinfo(real_cpuinfo()) == {0: 0, 1: 1}
    assert has_x2apic_flag(real_cpuinfo())


def test_synthetic_32768_cpu_cpuinfo():
    spec = TreeSpec(cpus=32768, apic_ids=[cpu * 2 for cpu in range(32768)], cpuinfo_style="minimal")
    apic_ids = parse_cpuinfo(_cpuinfo(spec))
    assert len(apic_ids) == 32768
    assert apic_ids[32767] == 65534


def test_full_style_cpuinfo_uses_apicid_not_initial_apicid():
    spec = TreeSpec(cpus=300, cpuinfo_style="full")  # initial apicid is the low 8 bits there
    assert parse_cpuinfo(_cpuinfo(spec))[299] == 299


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no processor"),
        ("processor : 0\napicid : x\n", "not a number"),
        ("apicid : 0\nprocessor : 0\n", "apicid before"),
        ("processor : 0\nprocessor : 0\n", "twice"),
        ("processor : 0\napicid : 1\napicid : 2\n", "two apicid"),
    ],
)
def test_malformed_cpuinfo(text, message):
    with pytest.raises(CpuinfoError, match=message):
        parse_cpuinfo(text)


def test_truncated_cpuinfo_is_a_clear_input_error():
    text = real_cpuinfo()
    truncated = text[: text.index("apicid", text.index("processor\t: 1"))]
    with pytest.raises(InputError, match="online CPU 1 has no apicid in proc/cpuinfo"):
        build_topology(truncated, "0-1", "0-1")


def test_online_cpu_missing_from_cpuinfo():
    with pytest.raises(InputError, match="online CPU 1 is not in proc/cpuinfo"):
        build_topology("processor : 0\napicid : 0\n", "0-1", "0-3")


def test_offline_cpus_are_not_required_in_cpuinfo():
    topology = build_topology("processor : 0\napicid : 0\n\nprocessor : 2\napicid : 4\n", "0,2", "0-3")
    assert topology.apic_ids == {0: 0, 2: 4}
    assert topology.nr_cpu_ids == 4
    assert topology.online == 0b101


def test_without_sysfs_cpu_files_cpuinfo_decides():
    topology = build_topology("processor : 0\napicid : 0\n\nprocessor : 1\napicid : 1\n", None, None)
    assert topology.online == 3 and topology.nr_cpu_ids == 2


def test_garbage_online_file():
    with pytest.raises(InputError, match="sys/devices/system/cpu/online"):
        build_topology("processor : 0\napicid : 0\n", "zz", "0")


def test_online_beyond_possible():
    with pytest.raises(InputError, match="beyond the last possible"):
        build_topology("processor : 0\napicid : 0\n", "0-4", "0-1")


@given(st.text(max_size=200))
def test_any_cpuinfo_text_gives_a_clean_error_or_a_map(text):
    try:
        result = parse_cpuinfo(text)
    except CpuinfoError:
        return
    assert all(isinstance(cpu, int) for cpu in result)


@given(st.binary(max_size=200))
def test_binary_garbage_gives_a_consistent_topology_or_one_line(data):
    try:
        topology = build_topology(data.decode("utf-8", "replace"), None, None)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    # every online CPU has an APIC ID, and every CPU is below nr_cpu_ids and possible
    assert set(topology.apic_ids) == {cpu for cpu in range(topology.nr_cpu_ids) if (topology.online >> cpu) & 1}
    assert topology.online & ~topology.possible == 0 and topology.possible < 1 << topology.nr_cpu_ids


# -- the MADT's offline vCPUs ----------------------------------------------------------------------


def _topology(online_apics, online, present, possible):
    return Topology(
        apic_ids=online_apics,
        online=online,
        possible=possible,
        nr_cpu_ids=possible.bit_length(),
        x2apic_capable=True,
        present=present,
    )


def test_refused_vcpus_keep_their_cpu_numbers_in_madt_order():
    # 6.12 under QEMU TCG, -smp 288, intremap=off: present 0-287, online 0-254 (CPU N has APIC ID N).
    madt = parse_madt(qemu_madt(range(288)))
    topology = _topology({cpu: cpu for cpu in range(255)}, (1 << 255) - 1, (1 << 288) - 1, (1 << 288) - 1)
    offline = offline_cpus(topology, madt)
    assert offline == tuple(FirmwareCpu(cpu, cpu, False) for cpu in range(255, 288))
    assert known_apic_ids(topology, offline)[287] == 287


def test_sparse_apic_ids_pair_with_present_offline_numbers():
    madt = parse_madt(qemu_madt([0, 1, 2, 3, 4, 5, 256, 455]))
    topology = _topology({cpu: cpu for cpu in range(6)}, 0b111111, 0xFF, 0xFF)
    assert offline_cpus(topology, madt) == (FirmwareCpu(6, 256, False), FirmwareCpu(7, 455, False))


def test_entries_the_kernel_never_registered_have_no_number():
    # 5.10 in xAPIC mode from boot skips x2APIC entries ("ACPI: x2apic entry ignored"): not present.
    madt = parse_madt(qemu_madt(range(258)))
    topology = _topology({cpu: cpu for cpu in range(255)}, (1 << 255) - 1, (1 << 255) - 1, (1 << 255) - 1)
    assert offline_cpus(topology, madt) == tuple(FirmwareCpu(None, apic, False) for apic in (255, 256, 257))


def test_hotplug_slots_take_possible_numbers_in_apic_id_order():
    madt = parse_madt(qemu_madt([0, 1, 301, 300], enabled=[True, True, False, False], revision=5, online_capable=True))
    topology = _topology({0: 0, 1: 1}, 0b11, 0b11, 0b1111)
    assert offline_cpus(topology, madt) == (FirmwareCpu(2, 300, True), FirmwareCpu(3, 301, True))


def test_an_operator_offlined_cpu_is_offline_with_its_own_apic_id():
    madt = parse_madt(qemu_madt(range(4)))
    topology = _topology({0: 0, 1: 1, 3: 3}, 0b1011, 0b1111, 0b1111)
    assert offline_cpus(topology, madt) == (FirmwareCpu(2, 2, False),)


def test_present_is_read_and_includes_online():
    topology = build_topology("processor : 0\napicid : 0\n", "0", "0-3", "0-2")
    assert (topology.online, topology.present, topology.possible) == (0b1, 0b111, 0b1111)
