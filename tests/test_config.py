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
    assert parsed.ext_dest_id is None and parsed.broadcast_apic_id_255 is False


def test_example_config_documents_every_key():
    with open(EXAMPLE) as handle:
        text = handle.read()
    keys = [
        "broadcast_apic_id_255",
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
        ("[reachability]\nbroadcast_apic_id_255 = 1\n", "reachability.broadcast_apic_id_255: expected a boolean"),
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
