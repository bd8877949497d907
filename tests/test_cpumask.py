import pytest
from hypothesis import given, settings, strategies as st

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


# -- hostile input: every parser bounds its work by the size of its input ---------------


def reference_cpulist(text):
    """A naive expansion of the kernel's cpulist syntax (bitmap_parselist), CPU by CPU."""
    cpus = set()
    for part in text.strip().split(","):
        span, _, stride = part.partition(":")
        first, _, last = span.partition("-")
        first, last = int(first), int(last or first)
        used, group = (int(n) for n in stride.split("/")) if stride else (last - first + 1, last - first + 1)
        cpus.update(cpu for cpu in range(first, last + 1) if (cpu - first) % group < used)
    return sum(1 << cpu for cpu in cpus)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0-7:2/4", 0b00110011),  # the kernel's own example: 0-1,4-5
        ("0-1023:2/256", reference_cpulist("0-1,256-257,512-513,768-769")),
        ("3-20:1/5", (1 << 3) | (1 << 8) | (1 << 13) | (1 << 18)),
        ("0-9:3/3", 0b1111111111),
        ("4-6:1/100", 1 << 4),
        ("0-5:1/2,1-5:1/2", 0b111111),
        ("00000000000000000000000000000000000000000007", 1 << 7),  # leading zeros are not digits
    ],
)
def test_strides(text, expected):
    assert cpumask.parse_cpulist(text) == expected


def test_strides_of_the_whole_range_are_computed_not_iterated():
    """`0-16777215:1/1` cost 2.2 GB and 18 s CPU by CPU; 0-200000000:1/2 ran for minutes."""
    import time
    import tracemalloc

    many = ",".join(f"{start}-{start + 1000}:2/5" for start in range(16000))  # 230 KB of strides

    def parse_all():
        assert cpumask.count(cpumask.parse_cpulist("0-65535:1/2")) == 32768
        assert cpumask.parse_cpulist("0-1048575:1/1", limit=cpumask.MAX_ID) == (1 << 1048576) - 1
        assert cpumask.count(cpumask.parse_cpulist("0-1048575:3/7", limit=cpumask.MAX_ID)) == 3 * (1048576 // 7) + 3
        assert cpumask.count(cpumask.parse_cpulist(many, limit=cpumask.MAX_ID)) == 17000

    started = time.process_time()
    parse_all()
    assert time.process_time() - started < 1.0
    cpumask._parse_cpulist_cached.cache_clear()
    tracemalloc.start()
    parse_all()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 100 << 20
    for text in ("0-16777215:1/1", "0-200000000:1/2", "0-16777215"):
        with pytest.raises(CpumaskError, match="implausibly large"):
            cpumask.parse_cpulist(text)


def test_overlapping_ranges_are_bounded_by_what_they_cover():
    text = ",".join(["0-65535"] * 130000)  # just under 1 MiB
    assert len(text) < 1 << 20
    with pytest.raises(CpumaskError, match="cover more than"):
        cpumask.parse_cpulist(text)
    assert cpumask.parse_cpulist(",".join(["0-65535"] * 200)) == (1 << 65536) - 1


@pytest.mark.parametrize("digits", [20, 4301, 5000, 100000])
def test_numbers_beyond_pythons_int_limit_are_clean_errors(digits):
    huge = "1" * digits
    for text in (huge, f"0-{huge}", f"{huge}-{huge}", f"0-3:{huge}/4", f"0-3:1/{huge}"):
        with pytest.raises(CpumaskError, match="implausibly large"):
            cpumask.parse_cpulist(text)
    with pytest.raises(CpumaskError):
        cpumask.parse_hexmask(huge)  # groups of at most 8 hex digits
    with pytest.raises(CpumaskError, match="implausibly large"):
        cpumask.parse_hexmask(",".join(["ffffffff"] * (digits // 8 + 3000)))


def test_the_default_bound_and_the_id_bound():
    assert cpumask.parse_cpulist("65535") == 1 << 65535
    with pytest.raises(CpumaskError, match=r"implausibly large \(the limit is 65535\)"):
        cpumask.parse_cpulist("65536")
    assert cpumask.parse_cpulist("1048575", limit=cpumask.MAX_ID) == 1 << 1048575
    with pytest.raises(CpumaskError, match="implausibly large"):
        cpumask.parse_cpulist("1048576", limit=cpumask.MAX_ID)


def _hostile_element():
    numbers = st.one_of(
        st.integers(0, 200),
        st.integers(0, 70000),
        st.integers(0, 10**60),
        st.text("0123456789", min_size=40, max_size=6000),
    )
    return st.one_of(
        numbers.map(str),
        st.tuples(numbers, numbers).map(lambda pair: f"{pair[0]}-{pair[1]}"),
        st.tuples(numbers, numbers, numbers, numbers).map(lambda q: f"{q[0]}-{q[1]}:{q[2]}/{q[3]}"),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(_hostile_element(), min_size=1, max_size=12).map(",".join))
def test_hostile_cpulists_are_bounded_and_exact(text):
    """Long ranges, strides and huge numbers, far beyond 40 characters: an exact answer or a
    clean error, in well under a second."""
    import time

    started = time.monotonic()
    try:
        mask = cpumask.parse_cpulist(text)
    except CpumaskError:
        mask = None
    assert time.monotonic() - started < 1.0
    if mask is not None and len(text) < 200 and mask.bit_length() <= 4096:
        assert mask == reference_cpulist(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text("0123456789abcdefABCDEF", min_size=1, max_size=9), min_size=1, max_size=3000).map(",".join))
def test_hostile_hexmasks_are_bounded(text):
    try:
        mask = cpumask.parse_hexmask(text)
    except CpumaskError:
        return
    assert mask.bit_length() <= cpumask.MAX_CPUS


# Added for the mutation run (tools/mutation.py): each test pins a boundary or a message a mutant changed.


@pytest.mark.parametrize(
    "text, cpus",
    [
        ("0-4:1/4", [0, 4]),  # the group equals the range's span: two runs, not one (lib/bitmap.c bitmap_parselist)
        ("2-6:1/4", [2, 6]),
        ("0-5:1/2,10", [0, 2, 4, 10]),  # a stride below a plain CPU: the CPU keeps its place
        ("0-65535:1/32768", [0, 32768]),  # a group far wider than the range's count of runs: no huge run string
    ],
)
def test_stride_boundaries(text, cpus):
    assert cpumask.parse_cpulist(text) == sum(1 << cpu for cpu in cpus)


def test_a_list_may_cover_exactly_2_to_the_24_positions():
    # 256 copies of 0-65535 cover 16,777,216 positions: the most a list may cover; one CPU more is refused.
    assert cpumask.parse_cpulist(",".join(["0-65535"] * 256)) == (1 << 65536) - 1
    with pytest.raises(CpumaskError, match="cover more than 16777216 positions"):
        cpumask.parse_cpulist(",".join(["0-65535"] * 256 + ["0"]))


def test_messages_name_the_last_possible_cpu_and_shorten_long_text():
    with pytest.raises(CpumaskError) as info:
        cpumask.parse_cpulist("0-8", nr_cpus=8)
    assert str(info.value) == "CPU 8 in '0-8' is beyond the last possible CPU (7)"
    long_list = ",".join(str(n) for n in range(30)) + ",x"  # 81 characters: shown as its first 37 and "..."
    with pytest.raises(CpumaskError) as info:
        cpumask.parse_cpulist(long_list)
    assert str(info.value) == ("'0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15...' is not a cpulist (bad element 'x')")
    exactly_40 = "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,x,"  # 40 characters: shown whole
    assert len(exactly_40) == 40
    with pytest.raises(CpumaskError) as info:
        cpumask.parse_cpulist(exactly_40)
    assert str(info.value) == f"{exactly_40!r} is not a cpulist (bad element 'x')"
    with pytest.raises(CpumaskError) as info:
        cpumask.parse_cpulist("1" * 30)
    assert str(info.value).startswith("number 11111111111111111... in ")


def test_format_hexmask_bounds():
    with pytest.raises(CpumaskError, match="nr_cpus must be positive"):
        cpumask.format_hexmask(0, 0)
    with pytest.raises(CpumaskError, match=r"CPU 8 .* beyond the last possible CPU \(7\)"):
        cpumask.format_hexmask(1 << 8, 8)
    assert cpumask.format_hexmask(1 << 7, 8) == "80"
    # more possible CPUs than MAX_CPUS (65,536): nr_cpu_ids is the bound, not the default limit
    text = cpumask.format_hexmask(1 << 66000, 70000)
    groups = text.split(",")
    assert len(groups) == 2188 and groups[0] == "0000" and int("".join(groups), 16) == 1 << 66000


def test_cpus_phrase():
    assert cpumask.cpus_phrase(1 << 3) == "CPU 3"
    assert cpumask.cpus_phrase(0b100111000) == "CPUs 3-5,8"


def test_is_decimal_takes_ascii_digits_only():
    assert cpumask.is_decimal("0") and cpumask.is_decimal("4095")
    assert not cpumask.is_decimal("²") and not cpumask.is_decimal("١") and not cpumask.is_decimal("")
    assert not cpumask.is_decimal("12a")


def test_first_and_mask_of_edges():
    assert cpumask.first(1) == 0 and cpumask.first(0b1100) == 2
    with pytest.raises(CpumaskError):
        cpumask.first(0)
    with pytest.raises(CpumaskError):
        cpumask.mask_of([3, -1])


def test_only_cpumask_errors_escape_the_parsers_and_formatters():
    for call in (
        lambda: cpumask.parse_cpulist(5),
        lambda: cpumask.parse_hexmask(None),
        lambda: cpumask.format_cpulist(-1),
        lambda: cpumask.format_hexmask(-1, 8),
    ):
        with pytest.raises(CpumaskError):
            call()
    with pytest.raises(CpumaskError, match="^empty hex mask$"):
        cpumask.parse_hexmask("  ")
