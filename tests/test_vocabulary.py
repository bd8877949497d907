"""The closed vocabularies a report carries are the ones its contract lists.

The destinations a config may force go straight into the report: the config's list and the
JSON Schema's (irqagent/schema/report-2.json, written by hand) must be the same set, and a
report with each of them must validate.  mypy checks the code's own Literal types; these
tests check the code against the published contract.
"""

import json
import os

import jsonschema
import pytest

import irqagent
from irqagent.config import DESTINATIONS, parse_config

SCHEMA_PATH = os.path.join(os.path.dirname(irqagent.__file__), "schema", "report-2.json")


def schema():
    with open(SCHEMA_PATH) as handle:
        return json.load(handle)


def enum(*path):
    node = schema()["properties"]
    for key in path:
        node = node[key]
    return node["enum"]


# The contract: config/irqagent.toml documents these six, in this order ([[controller]] destination).
DOCUMENTED = ["8bit", "15bit", "remapped", "hyperv-ir", "any", "none"]


def test_the_schema_lists_the_documented_destinations():
    assert enum("controllers", "items", "properties", "destination") == DOCUMENTED
    assert enum("irqs", "items", "properties", "destination") == DOCUMENTED


def test_the_config_accepts_exactly_the_documented_destinations():
    assert list(DESTINATIONS) == DOCUMENTED
    for destination in DOCUMENTED:
        text = f'[[controller]]\nchip = "IO-APIC"\ndestination = "{destination}"\n'
        assert parse_config(text).controllers[0].destination == destination


@pytest.mark.parametrize("destination", DOCUMENTED)
def test_a_forced_destination_is_reported_and_validates(tree, cli, tmp_path, destination):
    config = tmp_path / "irqagent.toml"
    config.write_text(f'[[controller]]\nchip = "*"\ndestination = "{destination}"\n')
    result = cli("audit", "--root", tree("qemu-kvm-256"), "--config", str(config), "--format", "json")
    assert result.code in (0, 1), result.err
    doc = result.json()
    jsonschema.Draft202012Validator(schema()).validate(doc)
    assert doc["controllers"] and {(c["destination"], c["source"]) for c in doc["controllers"]} == {
        (destination, "config")
    }
    assert {irq["destination"] for irq in doc["irqs"]} <= {destination}


# The contract: README's "JSON report" section lists a row's statuses in this order.
DOCUMENTED_STATUSES = [
    "ok",
    "would-change",
    "changed",
    "failed",
    "managed",
    "fixed-by-kernel",
    "ignored",
    "vanished",
    "unreachable",
    "pending",
    "stuck",
]


def test_the_statuses_are_the_documented_ones_everywhere():
    """plan.STATUSES (mypy checks each member against the Status Literal, not that none is
    missing) drives the Prometheus irqagent_irqs series: it lists every documented status, as
    the schema and README do."""
    from irqagent.plan import STATUSES

    assert enum("irqs", "items", "properties", "status") == DOCUMENTED_STATUSES
    assert list(STATUSES) == DOCUMENTED_STATUSES
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")) as handle:
        readme = " ".join(handle.read().split())
    assert "`status` is one of " + ", ".join(f"`{status}`" for status in DOCUMENTED_STATUSES) + ";" in readme
