import pytest
from hypothesis import given, strategies as st

from irqagent import cpumask
from irqagent.cpumask import CpumaskError

masks = st.integers(min_value=0, max_value=(1 << 2048) - 1)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", 0),
        ("\n", 0),
        ("0", 1),
        ("0-1\n", 3),
        ("0,2", 5),
        ("1-3,8", 0b100001110),
        ("0-7:2/4", 0b00110011),
        (" 3 ", 8),
        ("0-3,2-5", 0b111111),
    ],
)
def test_parse_cpulist(text, expected):
    assert cpumask.parse_cpulist(text) == expected


@pytest.mark.parametrize(
    "text", ["a", "1-", "-1", "3-1", "1,,2", "0x3", "1 2", "1-2-3", "0-7:0/4", "0-7:5/4", "\x00", "\u0663", "1-\u00b2"]
)
def test_parse_cpulist_rejects_garbage(text):
    with pytest.raises(CpumaskError):
        cpumask.parse_cpulist(text)


def test_parse_cpulist_enforces_nr_cpu_ids():
    assert cpumask.parse_cpulist("0-1", nr_cpus=2) == 3
    with pytest.raises(CpumaskError, match="beyond the last possible CPU"):
        cpumask.parse_cpulist("0-2", nr_cpus=2)


def test_parse_cpulist_refuses_absurd_numbers():
    with pytest.raises(CpumaskError, match="implausibly large"):
        cpumask.parse_cpulist("99999999999")


def test_format_cpulist_matches_kernel_style():
    assert cpumask.format_cpulist(0) == ""
    assert cpumask.format_cpulist(1) == "0"
    assert cpumask.format_cpulist(0b1011) == "0-1,3"
    assert cpumask.format_cpulist((1 << 300) - 1) == "0-299"


@pytest.mark.parametrize(
    "text, nr, expected",
    [
        ("3", 2, 3),
        ("ffffffff,ffffffff", 64, (1 << 64) - 1),
        ("00000000,00000001", 64, 1),
        ("fff,ffffffff,ffffffff,ffffffff,ffffffff,ffffffff,ffffffff,ffffffff,ffffffff,ffffffff", 300, (1 << 300) - 1),
        ("1,0", 64, 1 << 32),  # short inner groups are zero-padded, as the kernel parses them
    ],
)
def test_parse_hexmask(text, nr, expected):
    assert cpumask.parse_hexmask(text, nr) == expected


@pytest.mark.parametrize("text", ["", "g", "123456789", "ff,,ff", "0x3", "ff ff"])
def test_parse_hexmask_rejects_garbage(text):
    with pytest.raises(CpumaskError):
        cpumask.parse_hexmask(text)


def test_parse_hexmask_enforces_nr_cpu_ids():
    with pytest.raises(CpumaskError):
        cpumask.parse_hexmask("4", nr_cpus=2)


def test_format_hexmask_widths():
    assert cpumask.format_hexmask(3, 2) == "3"
    assert cpumask.format_hexmask(1, 64) == "00000000,00000001"
    assert cpumask.format_hexmask((1 << 300) - 1, 300).startswith("fff,ffffffff")
    assert cpumask.format_hexmask(1, 32768).count(",") == 1023


def test_iter_count_mask_of():
    mask = cpumask.parse_cpulist("0,5,64-66,32767")
    assert list(cpumask.iter_cpus(mask)) == [0, 5, 64, 65, 66, 32767]
    assert cpumask.count(mask) == 6
    assert cpumask.mask_of([0, 5, 64, 65, 66, 32767]) == mask
    assert cpumask.mask_of([]) == 0
    assert cpumask.first(mask) == 0 and cpumask.first(1 << 32767) == 32767


def test_many_ranges_parse_linearly():
    text = ",".join(str(cpu) for cpu in range(0, 32768, 2))  # 16,384 ranges
    mask = cpumask.parse_cpulist(text, 32768)
    assert cpumask.count(mask) == 16384
    assert cpumask.format_cpulist(mask) == text


@given(masks)
def test_cpulist_round_trip(mask):
    assert cpumask.parse_cpulist(cpumask.format_cpulist(mask)) == mask


@given(masks)
def test_hexmask_round_trip(mask):
    nr = max(mask.bit_length(), 1)
    text = cpumask.format_hexmask(mask, nr)
    assert cpumask.parse_hexmask(text, nr) == mask
    assert all(len(group) == 8 for group in text.split(",")[1:])


@given(st.lists(st.integers(0, 5000), max_size=50))
def test_iter_cpus_is_sorted_set(cpus):
    assert list(cpumask.iter_cpus(cpumask.mask_of(cpus))) == sorted(set(cpus))


@given(st.text(max_size=40))
def test_parsers_give_a_mask_within_nr_cpus_or_a_one_line_error(text):
    for parse, fmt in ((cpumask.parse_cpulist, cpumask.format_cpulist), (cpumask.parse_hexmask, None)):
        try:
            mask = parse(text, 64)
        except CpumaskError as exc:
            assert "\n" not in str(exc)
            continue
        assert 0 <= mask < 1 << 64  # no CPU at or beyond nr_cpu_ids
        if fmt is not None:
            assert parse(fmt(mask), 64) == mask


def test_mask_file_forms():
    assert cpumask.format_for_file(3, "smp_affinity_list", 64) == "0-1"
    assert cpumask.format_for_file(3, "smp_affinity", 64) == "00000000,00000003"
    assert cpumask.format_for_file(3, "default_smp_affinity", 2) == "3"
    assert cpumask.parse_for_file("10", "smp_affinity_list") == 1 << 10
    assert cpumask.parse_for_file("10", "default_smp_affinity") == 0x10
