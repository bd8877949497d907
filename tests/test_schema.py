"""Every report the CLI can produce validates against the shipped JSON Schema."""

import json
import os

import jsonschema
import pytest

import irqagent
from irqagent.report import SCHEMA

from test_cli import EXPECTED

SCHEMA_PATH = os.path.join(os.path.dirname(irqagent.__file__), "schema", "report-1.json")


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


def test_schema_rejects_a_wrong_status(validator, tree, cli):
    doc = cli("audit", "--root", tree("apic-255"), "--format", "json").json()
    doc["irqs"][0]["status"] = "fine"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(doc)
