"""The errno -> outcome table, against README's failure matrix (the documented contract)."""

import errno
import os
import re

import pytest

from irqagent.outcomes import default_affinity_outcome, errno_name, outcome_named, outcome_of

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Linux's errno values (include/uapi/asm-generic/errno-base.h, errno.h), as the kernel returns them.
LINUX = {"EPERM": 1, "ENOENT": 2, "EIO": 5, "EACCES": 13, "EBUSY": 16, "EINVAL": 22, "ENOSPC": 28, "EROFS": 30}
LINUX.update({"ERANGE": 34, "EOVERFLOW": 75, "EXDEV": 18, "ENOMEM": 12})


def readme_matrix():
    """{errno name: (status cell, retried cell)} from README's failure matrix."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    section = text.split("### Failure matrix", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("`E"):
            for name in re.findall(r"`(E[A-Z]+)`", cells[0]):
                rows[name] = (cells[1], cells[3])
    return rows


def test_readme_matrix_names_every_errno_the_table_knows():
    assert set(readme_matrix()) == {"EINVAL", "ENOSPC", "EBUSY", "EOVERFLOW", "ERANGE", "EIO", "EPERM", "ENOENT"} | {
        "EROFS",
        "EACCES",
    }


@pytest.mark.parametrize("name", sorted(readme_matrix()))
def test_each_errno_has_the_status_and_retry_readme_promises(name):
    status_cell, retried_cell = readme_matrix()[name]
    outcome = outcome_of(LINUX[name])
    if "run stops" in status_cell:
        assert outcome.fatal
        return
    assert not outcome.fatal
    assert f"`{outcome.status}`" in status_cell
    assert outcome.retry is retried_cell.startswith("yes")


def test_only_enospc_widens_to_every_allowed_cpu():
    assert [name for name, code in sorted(LINUX.items()) if outcome_of(code).widen] == ["ENOSPC"]


@pytest.mark.parametrize("code", [LINUX["EXDEV"], LINUX["ENOMEM"], 0, 4095])
def test_an_errno_the_table_does_not_know_is_a_permanent_failure(code):
    outcome = outcome_of(code)
    assert (outcome.status, outcome.retry, outcome.fatal, outcome.widen) == ("failed", False, False, False)
    assert outcome.detail == "the kernel refused the write"


@pytest.mark.parametrize("name", ["EIO", "EPERM", "ENOENT", "EINVAL", "EBUSY"])
def test_default_affinity_refusals_are_plain_failures(name):
    """default_smp_affinity always exists and belongs to no IRQ: never managed or vanished."""
    outcome = default_affinity_outcome(LINUX[name])
    assert (outcome.status, outcome.fatal) == ("failed", False)


@pytest.mark.parametrize("name", ["EROFS", "EACCES"])
def test_default_affinity_on_a_read_only_proc_stops_the_run(name):
    assert default_affinity_outcome(LINUX[name]).fatal


def test_errno_names_as_reports_carry_them():
    assert errno_name(LINUX["EBUSY"]) == "EBUSY" and errno_name(LINUX["ENOSPC"]) == "ENOSPC"
    assert errno_name(4095) == "errno 4095"


@pytest.mark.parametrize(
    "name, retry, status",
    [("EBUSY", True, "failed"), ("EIO", False, "managed"), ("ENOENT", False, "vanished"), ("errno 16", True, "failed")],
)
def test_outcome_named_reads_the_name_a_report_row_carries(name, retry, status):
    outcome = outcome_named(name)
    assert (outcome.retry, outcome.status) == (retry, status)


@pytest.mark.parametrize("name", ["", "errno ", "errno x", "ebusy", "EBUSYX", "__class__", "E2BIG?"])
def test_outcome_named_never_raises_on_a_strange_name(name):
    assert outcome_named(name).retry is False


def test_python_agrees_with_linux_errno_values():
    """The table is keyed by Python's errno constants; on Linux they are the kernel's values."""
    assert {name: getattr(errno, name) for name in LINUX} == LINUX


# -- added for the mutation run (docs/mutation-testing.md): the words a refused write's row carries --------


@pytest.mark.parametrize(
    "name, detail",
    [
        ("EINVAL", "the kernel refused this mask for this IRQ"),
        ("ENOSPC", "no free vector on the target CPUs"),
        ("EBUSY", "the previous move of this interrupt has not completed yet: retrying on the next pass"),
        ("EOVERFLOW", "a CPU beyond the kernel's nr_cpu_ids"),
        ("ERANGE", "a CPU beyond the kernel's nr_cpu_ids"),
        ("EIO", "the kernel refuses changes to this IRQ (managed, per-CPU or no-balancing)"),
        ("EPERM", "the kernel refuses changes to this IRQ (managed, per-CPU or no-balancing)"),
        ("ENOENT", "the IRQ was freed meanwhile"),
        ("EROFS", "/proc is read-only or writes are not permitted"),
        ("EACCES", "/proc is read-only or writes are not permitted"),
    ],
)
def test_each_errno_explains_itself_in_the_row_detail(name, detail):
    """The text after "writing 0-3 failed: Invalid argument: " in an IRQ's detail (README's failure matrix in
    the words of a report row)."""
    assert outcome_of(LINUX[name]).detail == detail


def test_a_read_only_proc_is_a_failure_that_stops_the_run():
    for name in ("EROFS", "EACCES"):
        outcome = outcome_of(LINUX[name])
        assert (outcome.status, outcome.fatal, outcome.retry, outcome.widen) == ("failed", True, False, False)


def test_a_refused_default_affinity_write_adds_no_irq_explanation():
    """ "the kernel refused this mask for this IRQ" would be wrong for default_smp_affinity: no text is added."""
    for name in ("EINVAL", "EIO", "ENOENT", "ENOSPC"):
        assert default_affinity_outcome(LINUX[name]).detail == ""
        assert not default_affinity_outcome(LINUX[name]).widen


@pytest.mark.parametrize("name", ["errno x16", "errno 1x", "errorcode", "EPERM?", "EXYZZY", "errno -1", "errno 1 "])
def test_a_name_that_is_no_errno_reads_as_an_unknown_errno(name):
    """Never EPERM's outcome (errno 1) nor a crash: the plain permanent failure."""
    outcome = outcome_named(name)
    assert (outcome.status, outcome.detail, outcome.retry, outcome.fatal) == (
        "failed",
        "the kernel refused the write",
        False,
        False,
    )


def test_outcome_named_reads_every_form_a_report_row_carries():
    assert outcome_named("EPERM").status == "managed"  # errno_name(1)
    assert outcome_named("errno 1").status == "managed"
    assert outcome_named("errno 2").status == "vanished"
    assert outcome_named("errno 4095").detail == "the kernel refused the write"
