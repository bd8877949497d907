"""Every report the CLI can produce validates against the shipped JSON Schema."""

import json
import os

import jsonschema
import pytest

import irqagent
from irqagent.report import SCHEMA

from conftest import REAL_GUESTS as REAL_GUESTS_DIR
from test_cli import EXPECTED

SCHEMA_PATH = os.path.join(os.path.dirname(irqagent.__file__), "schema", "report-2.json")


@pytest.fixture(scope="module")
def validator():
    with open(SCHEMA_PATH) as handle:
        schema = json.load(handle)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema"]["const"] == SCHEMA
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_audit_apply_restore_reports_validate(tree, cli, validator, name):
    root = tree(name)
    for args in (("audit",), ("apply", "--dry-run"), ("apply",), ("restore",)):
        result = cli(*args, "--root", root, "--format", "json")
        assert result.code in (0, 1), result.err
        validator.validate(result.json())


REAL_GUESTS = sorted(name[: -len(".tar.gz")] for name in os.listdir(REAL_GUESTS_DIR) if name.endswith(".tar.gz"))


def test_every_real_guest_is_validated():
    assert {"R1", "R4-61-R1", "R4-510-R1", "T4"} <= set(REAL_GUESTS)


@pytest.mark.parametrize("name", REAL_GUESTS)
def test_reports_of_real_captures_validate(real_guest, cli, validator, name):
    root = real_guest(name)  # shared by the session: audit and dry runs only, nothing written
    for args in (("audit",), ("apply", "--dry-run")):
        result = cli(*args, "--root", root, "--format", "json")
        assert result.code in (0, 1), result.err
        validator.validate(result.json())


def test_schema_rejects_a_wrong_status(validator, tree, cli):
    doc = cli("audit", "--root", tree("cloud-hypervisor-320"), "--format", "json").json()
    validator.validate(doc)
    doc["irqs"][0]["status"] = "fine"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(doc)


@pytest.mark.parametrize(
    "path",
    [
        ("refused_cpus",),
        ("refused_fix",),
        ("hypervisor", "vmm"),
        ("hypervisor", "ext_dest_id_offered"),
        ("apic", "mode"),
        ("apic", "mode_source"),
        ("apic", "limit"),
    ],
)
def test_schema_requires_the_reachability_fields(validator, tree, cli, path):
    doc = cli("audit", "--root", tree("qemu-kvm-288-8bit"), "--format", "json").json()
    validator.validate(doc)
    holder = doc
    for key in path[:-1]:
        holder = holder[key]
    del holder[path[-1]]
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(doc)
