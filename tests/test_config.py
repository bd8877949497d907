import os
import re
import subprocess
import sys

import pytest
from hypothesis import given, strategies as st

from irqagent.config import Config, ConfigError, first_rule, load_config, parse_config

from conftest import REPO

EXAMPLE = os.path.join(REPO, "config", "irqagent.toml")


def test_example_config_is_valid_and_equals_defaults():
    with open(EXAMPLE) as handle:
        parsed = parse_config(handle.read(), EXAMPLE)
    assert parsed.policy == Config().policy
    assert parsed.daemon == Config().daemon
    assert parsed.ext_dest_id is None and parsed.apic_id_255 == "unicast"
    assert Config().apic_id_255 == "unicast"  # APIC ID 255 is a unicast destination in x2APIC mode


def test_example_config_documents_every_key():
    with open(EXAMPLE) as handle:
        text = handle.read()
    keys = [
        "apic_id_255",
        "ext_dest_id",
        "chip",
        "destination",
        "reachable_apic_ids",
        "mode",
        "exclude_cpus",
        "honour_cmdline",
        "default_smp_affinity",
        "irq",
        "name",
        "device",
        "driver",
        "cpus",
        "ignore",
        "interval",
        "debounce",
        "max_delay",
        "metrics_file",
    ]
    for key in keys:
        assert re.search(rf"^#?\s*{key}\b", text, re.M), key
    for table in ("[reachability]", "[[controller]]", "[policy]", "[[rule]]", "[daemon]"):
        assert table in text


def test_missing_default_config_means_defaults(tmp_path):
    assert load_config(str(tmp_path / "absent.toml"), explicit=False) == Config()


def test_missing_explicit_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(str(tmp_path / "absent.toml"), explicit=True)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[reachability]\nbogus = 1\n", "reachability: unknown key 'bogus'"),
        ("typo = 1\n", "unknown key 'typo'"),
        ('[reachability]\next_dest_id = "yes"\n', "reachability.ext_dest_id"),
        # the old boolean, whatever its value, is an error that names the key replacing it
        ("[reachability]\nbroadcast_apic_id_255 = 1\n", 'broadcast_apic_id_255: replaced by apic_id_255 = "unicast"'),
        (
            "[reachability]\nbroadcast_apic_id_255 = true\n",
            'broadcast_apic_id_255: replaced by apic_id_255 = "unicast"',
        ),
        ("[reachability]\nbroadcast_apic_id_255 = false\n", "broadcast_apic_id_255: replaced by apic_id_255"),
        ('[reachability]\napic_id_255 = "multicast"\n', "reachability.apic_id_255: 'multicast' is not one of"),
        ("[reachability]\napic_id_255 = true\n", "reachability.apic_id_255: expected a string"),
        ('[[controller]]\ndestination = "8bit"\n', r"controller\[1\].chip: required"),
        (
            '[[controller]]\nchip = "IO-APIC"\ndestination = "9bit"\n',
            r"controller\[1\].destination: '9bit' is not one of",
        ),
        ('[[controller]]\nchip = "IO-APIC"\ndestination = "8bit"\nreachable_apic_ids = "x"\n', "reachable_apic_ids"),
        ('[policy]\nmode = "chaos"\n', "policy.mode: 'chaos' is not one of restrict, spread"),
        ('[policy]\nexclude_cpus = "1-"\n', "policy.exclude_cpus"),
        ('[[rule]]\ncpus = "0"\n', r"rule\[1\]: no match key"),
        ('[[rule]]\nname = "x"\n', r"rule\[1\]: no action"),
        ('[[rule]]\nname = "x"\nignore = true\ncpus = "1"\n', r"rule\[1\].ignore: cannot be combined"),
        ('[[rule]]\nirq = "a"\nignore = true\n', r"rule\[1\].irq"),
        ('[[rule]]\nname = ""\nignore = true\n', r"rule\[1\].name: must not be empty"),
        ("[daemon]\ninterval = 0\n", "daemon.interval"),
        ("[policy\n", "invalid TOML"),
        ("policy = 3\n", "policy: expected a table"),
    ],
)
def test_invalid_configs_name_the_key(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(text, "/etc/irqagent/irqagent.toml")


def test_rules_first_match_wins():
    parsed = parse_config(
        '[[rule]]\nname = "virtio*-input.*"\ncpus = "0-3"\n'
        '[[rule]]\nchip = "PCI-MSIX-*"\nignore = true\n'
        '[[rule]]\nirq = "1-15"\ndevice = "0000:00:1f.*"\nmode = "spread"\n'
    )

    def match(**kw):
        base = dict(irq=30, name="", chip="", device=None, driver=None)
        base.update(kw)
        rule = first_rule(parsed.rules, **base)
        return rule.index if rule else None

    assert match(name="virtio2-input.0", chip="PCI-MSIX-0000:00:03.0") == 0
    assert match(name="virtio2-output.0", chip="PCI-MSIX-0000:00:03.0") == 1
    assert match(irq=4, device="0000:00:1f.2") == 2
    assert match(irq=30, device="0000:00:1f.2") is None
    assert match(name="acpi, virtio2-input.0") == 0  # any name of a shared IRQ


def test_not_utf8(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(str(path), explicit=True)


@given(st.text(max_size=120))
def test_any_text_gives_a_config_or_one_line_error_naming_the_file(text):
    try:
        parsed = parse_config(text, "/etc/irqagent/irqagent.toml")
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("/etc/irqagent/irqagent.toml: ") and "\n" not in message, message
    else:
        assert isinstance(parsed, Config)
        assert parse_config(text, "/etc/irqagent/irqagent.toml") == parsed  # same text, same config


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomli is a dependency before Python 3.11")
def test_config_needs_no_tomli_from_python_3_11():
    """pyproject.toml installs tomli only for Python < 3.11: the standard library must do."""
    code = (
        "import sys; sys.modules['tomli'] = None\n"  # any import of tomli now fails
        "from irqagent.config import parse_config\n"
        "print(parse_config('[policy]\\nexclude_cpus = \"3,5\"\\n').policy.exclude_cpus)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, "40\n"), result.stderr  # CPUs 3 and 5: 0b101000


# -- hostile configs: bounded work, clean errors, nothing the OS would refuse later ------

HUGE = "9" * 5000  # beyond Python's 4,300-digit int() limit


@pytest.mark.parametrize(
    "text, message",
    [
        ("a = " + "[" * 5000 + "]" * 5000, "invalid TOML: arrays or tables nested too deeply"),
        ("a = " + "{b = " * 2000 + "1" + "}" * 2000, "invalid TOML: arrays or tables nested too deeply"),
        (f"[daemon]\ninterval = {HUGE}\n", "invalid TOML: Exceeds the limit"),
        (f"[daemon]\ninterval = {'9' * 400}\n", "daemon.interval: 9999.*is outside 1..86400 seconds"),
        ("[daemon]\ndebounce = nan\n", "daemon.debounce: nan is outside"),
        ("[daemon]\nmax_delay = 0\n", "daemon.max_delay: 0 is outside 0.1..600 seconds"),
        (f'[policy]\nexclude_cpus = "{HUGE}"\n', "policy.exclude_cpus: number 9999.* is implausibly large"),
        ('[policy]\nexclude_cpus = "0-16777215:1/1"\n', "policy.exclude_cpus: number 16777215 .* implausibly large"),
        (f'[[rule]]\nirq = "{HUGE}"\nignore = true\n', r"rule\[1\].irq: number 9999.* is implausibly large"),
        ('[[rule]]\nirq = "0-200000000:1/2"\nignore = true\n', r"rule\[1\].irq: .*implausibly large"),
        ('[[rule]]\nname = "x"\ncpus = "0-70000"\n', r"rule\[1\].cpus: .*implausibly large \(the limit is 65535\)"),
        ('[daemon]\nmetrics_file = "/run/x\\u0000y.prom"\n', "daemon.metrics_file: .* contains a NUL character"),
        ('[[rule]]\nchip = "IO\\u0000APIC"\nignore = true\n', r"rule\[1\].chip: .* contains a NUL character"),
        ('[daemon]\nmetrics_file = "irqagent.prom"\n', "daemon.metrics_file: 'irqagent.prom' is not an absolute path"),
        ('[daemon]\nmetrics_file = "/run/"\n', "names a directory"),
        (f'[daemon]\nmetrics_file = "/{"a" * 256}"\n', "is too long"),
        (f'[daemon]\nmetrics_file = "{"/abc" * 1100}"\n', "is too long"),
        (f'[[rule]]\nname = "{"*a" * 600}"\nignore = true\n', r"rule\[1\].name: .* is longer than 1024 characters"),
    ],
    ids=lambda value: value[:50] if not value.startswith(("a = ", "[")) else None,
)
def test_hostile_configs_are_clean_errors(text, message):
    """(Test ids are the expected messages: the inputs are long.)"""
    with pytest.raises(ConfigError, match=message) as caught:
        parse_config(text, "/etc/irqagent/irqagent.toml")
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    "text",
    [
        '[policy]\nmode = "' + "x" * 900000 + '"\n',
        "[policy]\n" + "k" * 900000 + " = 1\n",
        '[reachability]\next_dest_id = "' + "y" * 900000 + '"\n',
    ],
    ids=["mode", "key", "ext_dest_id"],
)
def test_error_lines_quote_at_most_80_characters_of_a_value(text):
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    quoted = str(caught.value).split("'")[1]
    assert 60 < len(quoted) <= 80 and quoted.endswith("...")


def test_lists_are_bounded_in_total():
    """Each rule may name IRQs up to 1,048,575 (a 128 KB mask): 5,000 such rules in a 100 KB
    file would hold 640 MB."""
    text = '[[rule]]\nirq = "0,1048575"\nignore = true\n' * 5000
    with pytest.raises(ConfigError, match="too large in total"):
        parse_config(text)
    assert len(parse_config('[[rule]]\nirq = "0,1048575"\nignore = true\n' * 100).rules) == 100


def test_max_delay_default_and_value():
    assert Config().daemon.max_delay == 2.0
    assert parse_config("[daemon]\nmax_delay = 5\n").daemon.max_delay == 5.0


def test_a_config_that_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):  # no reader: would block forever
        load_config(str(fifo), explicit=True)
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(str(tmp_path), explicit=True)
    assert load_config("/dev/null", explicit=True) == Config(path="/dev/null")
    big = tmp_path / "big.toml"
    big.write_bytes(b"# " + b"x" * (1 << 20) + b"\n")
    with pytest.raises(ConfigError, match="larger than 1048576 bytes"):
        load_config(str(big), explicit=True)


@given(
    st.lists(
        st.one_of(
            st.text("0123456789", min_size=40, max_size=5000),
            st.integers(0, 10**30).map(str),
            st.tuples(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**6), st.integers(0, 10**6)).map(
                lambda q: f"{q[0]}-{q[1]}:{q[2]}/{q[3]}"
            ),
        ),
        min_size=1,
        max_size=4,
    ).map(",".join),
    st.sampled_from(["exclude_cpus", "irq", "cpus", "reachable_apic_ids"]),
)
def test_any_list_value_gives_config_or_config_error(value, key):
    table = {
        "exclude_cpus": f'[policy]\nexclude_cpus = "{value}"\n',
        "irq": f'[[rule]]\nirq = "{value}"\nignore = true\n',
        "cpus": f'[[rule]]\nname = "x"\ncpus = "{value}"\n',
        "reachable_apic_ids": f'[[controller]]\nchip = "X"\ndestination = "8bit"\nreachable_apic_ids = "{value}"\n',
    }[key]
    try:
        parse_config(table)
    except ConfigError as exc:
        assert len(str(exc)) < 300
