"""The journal and the state directory under hostile and unlucky conditions (issue #12)."""

import errno
import hashlib
import json
import os
import shutil

import pytest

from irqagent import journal as journal_mod
from irqagent import output as output_mod
from irqagent import runner
from irqagent.config import Config, parse_config
from irqagent.errors import StateError
from irqagent.execute import UnrecordedWrites
from irqagent.journal import Journal, JournalEntry, JournalStore, StateDir
from irqagent.kernel import KernelTree

from conftest import read, write
from test_execute import FaultyTree

IS_ROOT = os.geteuid() == 0
BOOT_A = "11111111-2222-3333-4444-555555555555"
BOOT_B = "99999999-8888-7777-6666-555555555555"
NOBODY = 65534


def sealed(document):
    """A journal document with a valid SHA-256 (computed here, as the journal defines it)."""
    body = {key: document[key] for key in ("root", "boot_id", "entries", "default_smp_affinity")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return dict(document, sha256=hashlib.sha256(canonical.encode()).hexdigest())


# cloud-hypervisor-320: 320 vCPUs online, MSIs 15-bit (IRQs 24-30 on 0-319 comply); Cloud Hypervisor's IO-APIC
# reaches APIC IDs 0-255 only, so apply rewrites the legacy IRQs 1, 4, 8, 9 and 12 from 0-319 to 0-255 (5 writes;
# default_smp_affinity 0-319 is left alone: new device IRQs are MSIs).  IRQ 4 is the usual changed IRQ.
GUEST = "cloud-hypervisor-320"
OTHER_GUEST = "qemu-kvm-256"  # another root: 256 vCPUs, IRQs 1, 4, 8, 9, 12, 24-26 on 0-255
# Excluding CPUs 192-319 moves every IRQ (IO-APIC and MSI) and default_smp_affinity to 0-191: 13 writes.
EXCLUDE = '[policy]\nexclude_cpus = "192-319"\n'


def applied(tree, tmp_path, config_text="", writes=5):
    root = tree(GUEST)
    state = str(tmp_path / "state")
    report = runner.apply(KernelTree(root), parse_config(config_text), JournalStore(state))
    assert report.writes == writes
    return root, state


def journal_document(state):
    with open(os.path.join(state, "journal.json")) as handle:
        return json.load(handle)


def save_document(state, document):
    with open(os.path.join(state, "journal.json"), "w") as handle:
        json.dump(sealed(document), handle)


# -- schema ------------------------------------------------------------------------------------


def tamper_file(doc):
    doc["entries"]["4"]["file"] = "../../../victim"


def tamper_top_key(doc):
    doc["extra"] = "x"


def tamper_entry_key(doc):
    doc["entries"]["4"]["command"] = "rm -rf /"


def tamper_time(value):
    def change(doc):
        doc["entries"]["4"]["time"] = value

    return change


def tamper_irq_key(key):
    def change(doc):
        doc["entries"][key] = doc["entries"].pop("4")

    return change


def tamper_mask(doc):
    doc["entries"]["4"]["original"] = "0-70000"


def tamper_nothing_written(doc):
    doc["entries"]["4"]["written"] = None
    doc["entries"]["4"]["pending"] = None


def tamper_root(doc):
    doc["root"] = "relative/path"


def tamper_boot(doc):
    doc["boot_id"] = "not-a-boot-id"


def tamper_default_file(doc):
    doc["default_smp_affinity"]["file"] = "smp_affinity_list"


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (tamper_file, "is not one of smp_affinity_list, smp_affinity"),
        (tamper_top_key, "unknown keys ['extra']"),
        (tamper_entry_key, "malformed"),
        (tamper_time("abc"), "time is not a finite number"),
        (tamper_time([1]), "time is not a finite number"),
        (tamper_time(float("inf")), "time is not a finite number"),  # written as 1e400 below
        (tamper_time(True), "time is not a finite number"),
        (tamper_irq_key("-1"), "is not an IRQ number"),
        (tamper_irq_key("04"), "is not an IRQ number"),
        (tamper_irq_key("9999999999"), "is not an IRQ number"),
        (tamper_irq_key("9" * 5000), "is not an IRQ number"),  # beyond int()'s digit limit
        (tamper_time(10**400), "time is not a finite number"),  # an integer beyond any float
        (tamper_mask, "beyond the last possible CPU"),
        (tamper_nothing_written, "neither written nor pending"),
        (tamper_root, "root is not an absolute path"),
        (tamper_boot, "boot_id is not a boot ID"),
        (tamper_default_file, "is not one of default_smp_affinity"),
    ],
)
def test_tampered_journal_with_a_valid_checksum_is_damaged(tree, tmp_path, tamper, reason):
    _, state = applied(tree, tmp_path, EXCLUDE, writes=13)  # default_smp_affinity is journaled too
    document = journal_document(state)
    tamper(document)
    text = json.dumps(sealed(document)).replace("Infinity", "1e400")  # the checksum still holds
    with open(os.path.join(state, "journal.json"), "w") as handle:
        handle.write(text)
    with pytest.raises(StateError, match="damaged") as caught:
        JournalStore(state).load()
    assert reason in str(caught.value)


def test_path_traversal_entry_never_writes_outside_the_root(tree, cli, tmp_path):
    root, state = applied(tree, tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    document = journal_document(state)
    document["entries"]["4"]["file"] = os.path.relpath(victim, os.path.join(root, "proc/irq/4"))
    save_document(state, document)
    for args in (("restore",), ("restore", "--force"), ("apply",)):
        result = cli(*args, "--root", root, "--state-dir", state)
        assert result.code == 2 and "damaged" in result.err and len(result.err.splitlines()) == 1
    audit = cli("audit", "--root", root, "--state-dir", state)
    assert audit.code == 0 and "warning: journal" in audit.err
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("value", ["abc", [1], float("inf"), float("nan")])
def test_bad_time_is_a_damaged_journal_for_every_command(tree, cli, tmp_path, value):
    root, state = applied(tree, tmp_path)
    document = journal_document(state)
    document["entries"]["4"]["time"] = value
    text = json.dumps(sealed(document)).replace("Infinity", "1e400")  # NaN stays the literal NaN
    (tmp_path / "state" / "journal.json").write_text(text)
    audit = cli("audit", "--root", root, "--state-dir", state)
    assert audit.code == 0 and "warning: journal" in audit.err and "internal error" not in audit.err
    for command in ("apply", "restore"):
        result = cli(command, "--root", root, "--state-dir", state)
        assert result.code == 2 and "damaged" in result.err and "internal error" not in result.err


def test_size_is_capped_before_parsing(tmp_path, monkeypatch):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "journal.json").write_text('{"schema": "irqagent.journal/2", "pad": "' + "x" * 5000 + '"}')
    monkeypatch.setattr(journal_mod, "MAX_BYTES", 4096)

    def never(*args, **kwargs):
        raise AssertionError("parsed a journal larger than the cap")

    import json

    monkeypatch.setattr(json, "loads", never)  # the journal module imports json when it decodes
    with pytest.raises(StateError, match="larger than"):
        JournalStore(str(state)).load()


def test_deep_nesting_is_a_damaged_journal(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "journal.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(StateError, match="damaged"):
        JournalStore(str(state)).load()


# -- the state directory -----------------------------------------------------------------------


def test_state_dir_and_journal_are_private(tree, cli, tmp_path):
    state = str(tmp_path / "state")
    assert cli("apply", "--root", tree(GUEST), "--state-dir", state).code == 0
    assert oct(os.stat(state).st_mode & 0o777) == "0o700"
    assert oct(os.stat(os.path.join(state, "journal.json")).st_mode & 0o777) == "0o600"
    assert sorted(os.listdir(state)) == ["journal.json", "lock"]


def test_lock_symlink_is_never_followed_or_truncated(tree, cli, tmp_path):
    root = tree(GUEST)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, state / "lock")
    assert cli("apply", "--root", root, "--state-dir", str(state)).code == 0
    assert victim.read_text() == "precious\n"


def test_journal_symlink_is_refused(tree, cli, tmp_path):
    root = tree(GUEST)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("{}")
    os.symlink(victim, state / "journal.json")
    result = cli("apply", "--root", root, "--state-dir", str(state))
    assert result.code == 2 and "symlink" in result.err
    assert victim.read_text() == "{}" and read(root, "proc/irq/4/smp_affinity_list") == "0-319"


def test_state_dir_symlink_is_refused(tree, cli, tmp_path):
    root = tree(GUEST)
    (tmp_path / "real").mkdir(mode=0o700)
    os.symlink(tmp_path / "real", tmp_path / "state")
    result = cli("apply", "--root", root, "--state-dir", str(tmp_path / "state"))
    assert result.code == 2 and "symlink" in result.err and len(result.err.splitlines()) == 1
    assert os.listdir(tmp_path / "real") == []


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722])
def test_state_dir_writable_by_others_is_refused(tree, cli, tmp_path, mode):
    root = tree(GUEST)
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, mode)
    for command in ("apply", "restore"):
        result = cli(command, "--root", root, "--state-dir", str(state))
        assert result.code == 2 and "writable by group or others" in result.err
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-319"


def test_state_dir_under_a_group_writable_directory_is_refused(tree, cli, tmp_path):
    root = tree(GUEST)
    parent = tmp_path / "shared"
    parent.mkdir()
    os.chmod(parent, 0o775)
    result = cli("apply", "--root", root, "--state-dir", str(parent / "state"))
    assert result.code == 2 and f"directory {parent} is writable by group or others" in result.err


@pytest.mark.skipif(not IS_ROOT, reason="chown needs root")
def test_state_dir_owned_by_another_user_is_refused(tree, cli, tmp_path):
    root = tree(GUEST)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    result = cli("apply", "--root", root, "--state-dir", str(state))
    assert result.code == 2 and f"owned by uid {NOBODY}" in result.err


def test_config_writable_by_others_is_refused(tree, cli, tmp_path):
    config = tmp_path / "irqagent.toml"
    config.write_text("[policy]\n")
    os.chmod(config, 0o666)
    result = cli("audit", "--root", tree(GUEST), "--config", str(config))
    assert result.code == 2 and "writable by group or others" in result.err


@pytest.mark.skipif(not IS_ROOT, reason="chown needs root")
def test_config_owned_by_another_user_is_refused(tree, cli, tmp_path):
    config = tmp_path / "irqagent.toml"
    config.write_text("[policy]\n")
    os.chown(config, NOBODY, NOBODY)
    result = cli("audit", "--root", tree(GUEST), "--config", str(config))
    assert result.code == 2 and f"owned by uid {NOBODY}" in result.err


def test_stray_temp_files_of_a_killed_run_are_removed(tree, cli, tmp_path):
    root = tree(GUEST)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (state / ".journal.0123abcd").write_text("{half a jour")
    os.symlink(victim, state / ".journal.feedbeef")
    (state / "notes").write_text("mine\n")
    write(root, "proc/irq/4/smp_affinity_list.irqagent-new", "0-2")  # an IRQ the run writes
    os.symlink(victim, os.path.join(root, "proc/irq/25/smp_affinity_list.irqagent-new"))  # one it leaves alone
    assert cli("apply", "--root", root, "--state-dir", str(state)).code == 0
    assert sorted(os.listdir(state)) == ["journal.json", "lock", "notes"]
    assert not [name for name in os.listdir(os.path.join(root, "proc/irq/4")) if name.endswith("-new")]
    assert not os.path.lexists(os.path.join(root, "proc/irq/25/smp_affinity_list.irqagent-new"))
    assert victim.read_text() == "precious\n"


# -- root and boot -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", [("apply",), ("restore",), ("run", "--no-uevents")])
def test_another_root_needs_a_state_dir(tree, cli, command):
    root = tree(GUEST)
    result = cli(*command, "--root", root, state_dir="none")
    assert result.code == 2 and "needs --state-dir" in result.err and len(result.err.splitlines()) == 1
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-319"


def test_audit_and_dry_run_of_another_root_need_no_state_dir(tree, cli):
    root = tree(GUEST)
    assert cli("audit", "--root", root, state_dir="none").code == 1
    assert cli("apply", "--dry-run", "--root", root, state_dir="none").code == 1


def test_journal_records_the_resolved_root_and_its_boot_id(tree, tmp_path):
    root = tree(GUEST)
    write(root, "proc/sys/kernel/random/boot_id", BOOT_A.upper() + "\n")
    os.symlink(root, tmp_path / "link")
    runner.apply(KernelTree(str(tmp_path / "link")), Config(), JournalStore(str(tmp_path / "state")))
    document = journal_document(str(tmp_path / "state"))
    assert (document["root"], document["boot_id"]) == (os.path.realpath(root), BOOT_A)


def test_another_roots_journal_is_never_used(tree, cli, tmp_path):
    root_a, state = applied(tree, tmp_path)
    root_b = tree(OTHER_GUEST)
    before_b = read(root_b, "proc/irq/1/smp_affinity_list")
    result = cli("apply", "--root", root_b, "--state-dir", state)
    assert result.code == 2 and "not this root" in result.err
    for force in ((), ("--force",)):
        restored = cli("restore", "--root", root_b, "--state-dir", state, "--format", "json", *force)
        assert restored.code == 1
        rows = {row["irq"]: row for row in restored.json()["irqs"]}
        assert "another root" in rows[1]["detail"] and rows[1]["status"] == "ignored"
    assert read(root_b, "proc/irq/1/smp_affinity_list") == before_b
    assert cli("restore", "--root", root_a, "--state-dir", state).code == 0
    assert read(root_a, "proc/irq/1/smp_affinity_list") == "0-319"


def test_earlier_boot_is_history_until_forced(tree, cli, tmp_path):
    root = tree(GUEST)
    write(root, "proc/sys/kernel/random/boot_id", BOOT_A + "\n")
    state = str(tmp_path / "state")
    assert cli("apply", "--root", root, "--state-dir", state).code == 0
    write(root, "proc/sys/kernel/random/boot_id", BOOT_B + "\n")
    audit = cli("audit", "--root", root, "--state-dir", state)
    assert "earlier boot" in audit.err
    result = cli("restore", "--root", root, "--state-dir", state, "--format", "json")
    assert result.code == 1 and read(root, "proc/irq/4/smp_affinity_list") == "0-255"
    row = {r["irq"]: r for r in result.json()["irqs"]}[4]
    assert row["status"] == "ignored" and "earlier boot" in row["detail"]
    assert cli("restore", "--root", root, "--state-dir", state, "--force").code == 0
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-319"


def test_first_apply_of_a_new_boot_journals_its_originals_and_drops_the_old(tree, cli, tmp_path):
    root = tree(GUEST)
    write(root, "proc/sys/kernel/random/boot_id", BOOT_A + "\n")
    state = str(tmp_path / "state")
    assert cli("apply", "--root", root, "--state-dir", state).code == 0
    # Reboot: the kernel starts over with every IRQ on 0-319 except IRQ 4, set to 0-7 at boot (compliant).
    for irq in (1, 4, 8, 9, 12, 24, 25, 26, 27, 28, 29, 30):
        write(root, f"proc/irq/{irq}/smp_affinity_list", "0-319\n")
    write(root, "proc/irq/4/smp_affinity_list", "0-7\n")
    write(root, "proc/sys/kernel/random/boot_id", BOOT_B + "\n")
    result = cli("apply", "--root", root, "--state-dir", state)
    assert result.code == 0 and "earlier boot" in result.err
    document = journal_document(state)
    assert document["boot_id"] == BOOT_B and "4" not in document["entries"]
    assert document["entries"]["1"]["original"] == "0-319"
    assert cli("restore", "--root", root, "--state-dir", state).code == 0
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-7"


def test_apply_with_nothing_to_write_drops_an_earlier_boots_entries(tree, cli, tmp_path):
    root = tree(GUEST)
    write(root, "proc/sys/kernel/random/boot_id", BOOT_A + "\n")
    state = str(tmp_path / "state")
    assert cli("apply", "--root", root, "--state-dir", state).code == 0
    write(root, "proc/sys/kernel/random/boot_id", BOOT_B + "\n")
    result = cli("apply", "--root", root, "--state-dir", state)
    assert result.code == 0 and "earlier boot" in result.err
    assert not os.path.exists(os.path.join(state, "journal.json"))


# -- restore is total --------------------------------------------------------------------------


def shrink_to(root, cpus):
    """The VM was resized down to ``cpus`` possible CPUs (the IRQs keep what they hold)."""
    from irqagent.devtools.gentree import TreeSpec, write_tree

    small = root + ".small"
    write_tree(TreeSpec(cpus=cpus, kernel="5.4.0"), small)
    for rel in ("proc/cpuinfo", "sys/devices/system/cpu/online", "sys/devices/system/cpu/possible"):
        shutil.copy(os.path.join(small, rel), os.path.join(root, rel))
    write(root, "sys/devices/system/cpu/present", read(small, "sys/devices/system/cpu/online") + "\n")
    write(root, "proc/irq/default_smp_affinity", read(small, "proc/irq/default_smp_affinity") + "\n")


def test_vm_resized_down_restores_what_is_possible(tree, cli, tmp_path):
    root, state = applied(tree, tmp_path, EXCLUDE, writes=13)  # IRQ 4: 0-319 -> 0-191
    shrink_to(root, 256)  # the journal holds 0-319; possible is now 0-255
    result = cli("restore", "--root", root, "--state-dir", state, "--format", "json")
    assert result.code == 1 and "internal error" not in result.err
    row = {r["irq"]: r for r in result.json()["irqs"]}[4]
    assert (row["status"], row["target"]) == ("changed", "0-255")
    assert "partially" in row["detail"] and "256-319" in row["detail"]
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-255"
    assert journal_document(state)["entries"]["4"]["original"] == "0-319"  # kept
    again = cli("restore", "--root", root, "--state-dir", state, "--format", "json")
    assert again.code == 1 and again.json()["summary"]["writes"] == 0
    entry = journal_document(state)["entries"]["4"]
    assert (entry["original"], entry["written"]) == ("0-319", "0-255")  # still recognised as the agent's
    for args in (("apply",), ("apply", "--dry-run"), ("audit",), ("restore", "--force")):
        result = cli(*args, "--root", root, "--state-dir", state)
        assert result.code in (0, 1) and "internal error" not in result.err, args


def test_original_with_no_possible_cpu_is_reported_not_restored(tree, tmp_path):
    root, state = applied(tree, tmp_path)
    document = journal_document(state)
    document["entries"]["4"]["original"] = "280-319"
    save_document(state, document)
    shrink_to(root, 256)
    report = runner.restore_all(KernelTree(root), Config(), JournalStore(state), force=False)
    row = {r.irq: r for r in report.rows}[4]
    assert row.status == "ignored" and "none of the original CPUs 280-319 is possible" in row.detail
    assert report.exit_status == 1 and read(root, "proc/irq/4/smp_affinity_list") == "0-255"


class ResettingTree(KernelTree):
    """The kernel's answer to a mask with no online CPU: accepted, the IRQ gets its default."""

    def __init__(self, root, online, default):
        super().__init__(root)
        self.online, self.default = online, default

    def write_affinity(self, irq, text, filename="smp_affinity_list"):
        from irqagent import cpumask

        if not cpumask.parse_cpulist(text) & self.online:
            text = self.default
        super().write_affinity(irq, text, filename)


def test_original_with_no_online_cpu_resets_to_default_and_is_not_a_failure(tree, tmp_path):
    root, state = applied(tree, tmp_path)
    document = journal_document(state)
    document["entries"]["4"]["original"] = "319"
    save_document(state, document)
    with open(os.path.join(root, "proc/cpuinfo")) as handle:  # CPU 319 goes offline
        blocks = handle.read().strip().split("\n\n")
    assert "processor\t: 319\n" in blocks[-1]
    write(root, "proc/cpuinfo", "\n\n".join(blocks[:-1]) + "\n\n")
    write(root, "sys/devices/system/cpu/online", "0-318\n")
    online = (1 << 319) - 1
    report = runner.restore_all(ResettingTree(root, online, "0-318"), Config(), JournalStore(state), force=False)
    row = {r.irq: r for r in report.rows}[4]
    assert row.status == "changed" and row.errno is None
    assert "no online CPU" in row.detail and "default affinity" in row.detail
    assert report.exit_status == 0 and 4 not in JournalStore(state).load().entries


def test_restore_dry_run_writes_nothing_and_shows_the_plan(tree, cli, tmp_path):
    root, state = applied(tree, tmp_path)
    write(root, "proc/irq/8/smp_affinity_list", "7\n")  # changed since
    journal_before = open(os.path.join(state, "journal.json")).read()
    result = cli("restore", "--dry-run", "--root", root, "--state-dir", state, "--format", "json")
    assert result.code == 1
    document = result.json()
    assert document["dry_run"] is True and document["summary"]["writes"] == 0
    rows = {r["irq"]: r for r in document["irqs"]}
    assert (rows[4]["status"], rows[4]["target"]) == ("would-change", "0-319")
    assert rows[8]["status"] == "ignored" and "changed since" in rows[8]["detail"]
    assert document["summary"]["not_restored"] == 1
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-255"
    assert open(os.path.join(state, "journal.json")).read() == journal_before
    text = cli("restore", "--dry-run", "--root", root, "--state-dir", state)
    assert "restore --dry-run:" in text.out


def test_restore_reports_an_entry_whose_irq_is_gone(tree, tmp_path):
    root, state = applied(tree, tmp_path)
    shutil.rmtree(os.path.join(root, "proc/irq/9"))
    shutil.rmtree(os.path.join(root, "sys/kernel/irq/9"))
    report = runner.restore_all(KernelTree(root), Config(), JournalStore(state), force=False)
    row = {r.irq: r for r in report.rows}[9]
    assert row.status == "vanished" and "no longer exists" in row.detail
    assert report.exit_status == 0


@pytest.mark.parametrize(
    "code, status",
    [(errno.EIO, "managed"), (errno.EPERM, "managed"), (errno.EINVAL, "failed"), (errno.EBUSY, "failed")],
)
def test_restore_maps_errnos_like_apply(tree, tmp_path, code, status):
    root, state = applied(tree, tmp_path)
    report = runner.restore_all(FaultyTree(root, faults={4: code}), Config(), JournalStore(state), force=False)
    row = {r.irq: r for r in report.rows}[4]
    assert (row.status, row.errno) == (status, errno.errorcode[code])
    assert report.exit_status == 1 and list(JournalStore(state).load().entries) == [4]


def test_ebusy_is_retried_next_pass(tree, tmp_path):
    root = tree(GUEST)
    report = runner.apply(FaultyTree(root, faults={4: errno.EBUSY}), Config(), JournalStore(str(tmp_path / "s")))
    row = {r.irq: r for r in report.rows}[4]
    assert (row.status, row.errno) == ("failed", "EBUSY") and "retrying" in row.detail
    from irqagent.outcomes import outcome_of

    assert outcome_of(errno.EBUSY).retry is True and outcome_of(errno.EINVAL).retry is False


# -- a journal save that fails -------------------------------------------------------------------


class Recording(KernelTree):
    def __init__(self, root):
        super().__init__(root)
        self.written = []

    def write_affinity(self, irq, text, filename="smp_affinity_list"):
        self.written.append(irq)
        super().write_affinity(irq, text, filename)

    def write_default_affinity(self, text):
        self.written.append("default")
        super().write_default_affinity(text)


@pytest.mark.parametrize("where", ["write", "fsync"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_failed_journal_save_before_the_writes_writes_nothing(tree, tmp_path, monkeypatch, where, code):
    root = tree(GUEST)

    def fail(*args):
        raise OSError(code, os.strerror(code))

    if where == "write":
        monkeypatch.setattr(output_mod, "_write_all", fail)
    else:
        monkeypatch.setattr(journal_mod.os, "fsync", fail)
    recording = Recording(root)
    with pytest.raises(StateError, match="nothing was changed") as caught:
        runner.apply(recording, Config(), JournalStore(str(tmp_path / "state")))
    assert os.strerror(code) in str(caught.value)
    assert recording.written == [] and read(root, "proc/irq/4/smp_affinity_list") == "0-319"


def fail_save_number(monkeypatch, number):
    real = JournalStore.save
    count = []

    def save(self, journal):
        count.append(1)
        if len(count) == number:
            raise journal_mod.JournalWriteError(self.path, "No space left on device")
        real(self, journal)

    monkeypatch.setattr(JournalStore, "save", save)


def test_failed_final_save_says_exactly_what_changed_and_restore_recovers_it(tree, cli, tmp_path, monkeypatch):
    root = tree(GUEST)
    state = str(tmp_path / "state")
    config = tmp_path / "irqagent.toml"
    config.write_text(EXCLUDE)  # every IRQ and default_smp_affinity move: 13 writes
    with monkeypatch.context() as patched:  # undone alone: the test's no-machine-config setting stays
        fail_save_number(patched, 2)
        result = cli("apply", "--root", root, "--state-dir", state, "--config", str(config), "--format", "json")
    assert result.code == 2 and len(result.err.splitlines()) == 1
    assert "changed IRQs 1,4,8-9,12,24-30 and default_smp_affinity" in result.err
    assert "refusing" not in result.err and "restore" in result.err
    assert result.json()["summary"]["writes"] == 13  # the report of what was done is printed too
    assert cli("restore", "--root", root, "--state-dir", state).code == 0
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-319"
    assert read(root, "proc/irq/24/smp_affinity_list") == "0-319"
    assert read(root, "proc/irq/default_smp_affinity") == ",".join(["ffffffff"] * 10)  # 0-319


def test_failed_save_before_an_enospc_fallback_stops_the_run_before_that_write(tree, tmp_path, monkeypatch):
    root = tree(GUEST)
    write(root, "proc/irq/8/smp_affinity_list", "3,280\n")  # IO-APIC: target 3, fallback 0-255
    faulty = FaultyTree(root, faults={8: errno.ENOSPC}, fail_once={8})
    fail_save_number(monkeypatch, 2)  # the save that journals the fallback before writing it
    with pytest.raises(UnrecordedWrites) as caught:
        runner.apply(faulty, Config(), JournalStore(str(tmp_path / "state")))
    assert "stopped before the write it would have recorded; changed IRQs 1,4 (all journaled)" in str(caught.value)
    assert [irq for irq, _ in faulty.attempts] == [1, 4, 8]  # 9 and 12 never written
    assert read(root, "proc/irq/8/smp_affinity_list") == "3,280"
    monkeypatch.undo()
    assert runner.restore_all(KernelTree(root), Config(), JournalStore(str(tmp_path / "state")), False).exit_status == 0
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-319"


# -- the lock --------------------------------------------------------------------------------------


def test_removed_state_dir_is_relocked_or_the_pass_refused(tmp_path):
    path = str(tmp_path / "state")
    holder = StateDir(path).lock()
    shutil.rmtree(path)
    other = StateDir(path).lock()  # a second writer created it again and holds it
    with pytest.raises(StateError, match="removed or replaced"):
        holder.ensure_current()
    other.close()
    holder.ensure_current()  # now the holder has the new directory
    with pytest.raises(StateError, match="holds"):
        StateDir(path).lock()
    holder.close()


def test_saves_go_to_the_locked_directory(tmp_path):
    path = str(tmp_path / "state")
    with StateDir(path) as state:
        moved = str(tmp_path / "moved")
        os.rename(path, moved)
        os.mkdir(path, 0o700)
        JournalStore(state).save(Journal({24: JournalEntry(24, "0-3", "0")}, root="/"))
        assert os.listdir(path) == [] and "journal.json" in os.listdir(moved)


def test_deleting_the_state_dir_under_the_daemon_never_lets_two_writers_run(tree, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO, run_process

    root = tree(GUEST)
    state, metrics, log = str(tmp_path / "state"), str(tmp_path / "m.prom"), tmp_path / "daemon.log"

    def wait_until(check, what):
        deadline = time.monotonic() + 20
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}; log: {log.read_text()}"
            assert daemon.poll() is None, log.read_text()
            time.sleep(0.02)

    with open(log, "w") as stderr:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "irqagent", "run", "--root", root, "--state-dir", state]
            + ["--no-uevents", "--interval", "3600", "--metrics-file", metrics],
            cwd=REPO,
            stderr=stderr,
        )
    try:
        wait_until(lambda: os.path.exists(metrics), "the first pass")
        shutil.rmtree(state)
        intruder = StateDir(state).lock()  # a second writer re-creates the directory and holds it
        write(root, "proc/irq/4/smp_affinity_list", "0-319\n")
        daemon.send_signal(signal.SIGUSR1)
        wait_until(lambda: "removed or replaced" in log.read_text(), "the refused pass")
        assert read(root, "proc/irq/4/smp_affinity_list") == "0-319"  # the daemon wrote nothing
        intruder.close()
        daemon.send_signal(signal.SIGUSR1)
        wait_until(lambda: read(root, "proc/irq/4/smp_affinity_list") == "0-255", "the pass after the re-lock")
        second = run_process("apply", "--root", root, "--state-dir", state)
        assert second.returncode == 2 and "another irqagent apply, restore or run is active" in second.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0


class Crash(BaseException):
    """Stands for kill -9: nothing after it runs."""


@pytest.mark.parametrize("crash_after", [0, 1, 6, 11])
def test_crash_during_restore_then_restore_recovers_everything(tree, tmp_path, crash_after):
    root = tree(GUEST)
    pristine = {irq: read(root, f"proc/irq/{irq}/smp_affinity_list") for irq in (1, 4, 24, 30)}
    pristine_default = read(root, "proc/irq/default_smp_affinity")
    state = str(tmp_path / "state")
    assert runner.apply(KernelTree(root), parse_config(EXCLUDE), JournalStore(state)).writes == 13
    assert {irq: read(root, f"proc/irq/{irq}/smp_affinity_list") for irq in pristine} != pristine
    written = []

    class Dying(KernelTree):
        def write_affinity(self, irq, text, filename="smp_affinity_list"):
            if len(written) == crash_after:
                raise Crash()
            written.append(irq)
            super().write_affinity(irq, text, filename)

    with pytest.raises(Crash):
        runner.restore_all(Dying(root), Config(), JournalStore(state), force=False)
    report = runner.restore_all(KernelTree(root), Config(), JournalStore(state), force=False)
    assert report.exit_status == 0 and JournalStore(state).load().empty
    assert {irq: read(root, f"proc/irq/{irq}/smp_affinity_list") for irq in pristine} == pristine
    assert read(root, "proc/irq/default_smp_affinity") == pristine_default


def test_every_kind_of_restore_report_validates(tree, cli, tmp_path):
    import jsonschema

    import irqagent

    with open(os.path.join(os.path.dirname(irqagent.__file__), "schema", "report-2.json")) as handle:
        validator = jsonschema.Draft202012Validator(json.load(handle))
    root, state = applied(tree, tmp_path)
    shutil.rmtree(os.path.join(root, "proc/irq/9"))  # an entry whose IRQ is gone
    write(root, "proc/irq/8/smp_affinity_list", "7\n")  # changed since
    other = tree(OTHER_GUEST)  # another root
    write(root, "proc/sys/kernel/random/boot_id", BOOT_B + "\n")  # an earlier boot
    for args in (
        ("--root", other),
        ("--root", root, "--dry-run"),
        ("--root", root),
        ("--root", root, "--force", "--dry-run"),
    ):
        result = cli("restore", "--state-dir", state, "--format", "json", *args)
        assert result.code == (0 if "--force" in args else 1), (args, result.err)
        validator.validate(result.json())
    write(root, "proc/sys/kernel/random/boot_id", "")
    shrink_to(root, 256)
    result = cli("restore", "--state-dir", state, "--format", "json", "--root", root)
    assert result.code == 1
    validator.validate(result.json())


def test_every_test_the_guarantees_name_exists():
    import re

    from conftest import REPO

    with open(os.path.join(REPO, "README.md")) as handle:
        readme = handle.read()
    section = readme[readme.index("## Guarantees and failures") : readme.index("## Configuration")]
    named = []
    current = None
    for file, name in re.findall(r"`(?:(test_\w+\.py))?::(test_\w+)`", section):
        current = file or current
        named.append((current, name))
    assert len(named) > 40
    for file, name in named:
        with open(os.path.join(REPO, "tests", file)) as handle:
            assert f"def {name}(" in handle.read(), f"README names {file}::{name}, which does not exist"
