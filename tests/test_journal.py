import errno
import json
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from irqagent import output
from irqagent.errors import StateError
from irqagent.journal import (
    EMPTY,
    Journal,
    JournalEntry,
    JournalStore,
    JournalWriteError,
    Scope,
    StateDir,
    StateLock,
    decode,
    encode,
)
from irqagent.records import replace


def sample():
    return Journal(
        {24: JournalEntry(24, "0-299", "0-254", "PCI-MSI", "virtio1-input.0", time=1.5)},
        JournalEntry(-1, "fff,ffffffff", "7f,ffffffff", file="default_smp_affinity"),
        root="/",
        boot_id="0b5e2b8e-4f0e-4a57-9a43-3b8a0e4c2f11",
    )


def test_round_trip(tmp_path):
    store = JournalStore(str(tmp_path / "state"))
    assert store.load() == EMPTY
    store.save(sample())
    assert store.load() == sample()
    assert oct(os.stat(tmp_path / "state").st_mode & 0o777) == "0o700"


def test_empty_journal_removes_the_file(tmp_path):
    store = JournalStore(str(tmp_path))
    store.save(sample())
    store.save(EMPTY)
    assert not os.path.exists(store.path)


def test_no_temp_files_left_behind(tmp_path):
    store = JournalStore(str(tmp_path))
    for _ in range(3):
        store.save(sample())
    assert sorted(os.listdir(tmp_path)) == ["journal.json"]


@pytest.mark.parametrize("step", ["write", "fsync", "rename"])
def test_failed_save_keeps_the_previous_journal_and_no_temp_file(tmp_path, monkeypatch, step):
    store = JournalStore(str(tmp_path))
    store.save(sample())
    before = open(store.path, "rb").read()

    def fail(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(
        *{"write": (output, "_write_all"), "fsync": (os, "fsync"), "rename": (os, "replace")}[step], fail
    )
    with pytest.raises(JournalWriteError, match=r"^cannot write journal .*/journal.json: Input/output error$"):
        store.save(replace(sample(), boot_id=None))  # another journal: must not replace the saved one
    monkeypatch.undo()
    assert open(store.path, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["journal.json"]
    assert oct(os.stat(store.path).st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # torn
        lambda text: text.replace('"0-254"', '"0-253"'),  # edited: checksum mismatch
        lambda text: "",
        lambda text: "\x00\x01garbage",
        lambda text: text.replace("irqagent.journal/2", "irqagent.journal/9"),
    ],
)
def test_damaged_journal_is_detected(tmp_path, damage):
    store = JournalStore(str(tmp_path))
    store.save(sample())
    with open(store.path) as handle:
        text = handle.read()
    with open(store.path, "w") as handle:
        handle.write(damage(text))
    with pytest.raises(StateError, match="damaged"):
        store.load()


def test_checksummed_garbage_masks_are_refused():
    document = json.loads(encode(sample()))
    document["entries"]["24"]["original"] = "not-a-mask"
    body = {key: document[key] for key in ("root", "boot_id", "entries", "default_smp_affinity")}
    from irqagent.journal import _checksum

    document["sha256"] = _checksum(body)
    with pytest.raises(StateError, match="entry for IRQ 24"):
        decode(json.dumps(document))


def test_unusable_state_dir_is_a_state_error(tmp_path):
    (tmp_path / "file").write_text("")
    store = JournalStore(str(tmp_path / "file" / "state"))  # a path through a regular file: ENOTDIR
    with pytest.raises(StateError, match="cannot create state directory"):
        store.save(sample())


def test_lock_is_exclusive_across_processes(tmp_path):
    with StateLock(str(tmp_path)):
        code = (
            "import sys; from irqagent.journal import StateLock; from irqagent.errors import StateError\n"
            f"try:\n    StateLock({str(tmp_path)!r}).lock()\nexcept StateError as e:\n    print(e); sys.exit(3)\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert result.returncode == 3
        assert f"process {os.getpid()} holds" in result.stdout
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0


@given(st.text(max_size=200))
def test_decode_any_text_is_a_one_line_error(text):
    """No text without a valid checksum is ever taken for a journal."""
    with pytest.raises(StateError) as caught:
        decode(text)
    assert "\n" not in str(caught.value)


# -- added for the mutation run (docs/mutation-testing.md) -------------------------------------------


def resealed(document):
    """The document with a valid SHA-256 over its body (the journal's definition: canonical JSON, sorted keys)."""
    import hashlib

    body = {key: document[key] for key in ("root", "boot_id", "entries", "default_smp_affinity")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    sealed = dict(document, sha256=hashlib.sha256(canonical.encode()).hexdigest())
    return json.dumps(sealed, sort_keys=True, separators=(",", ":"))


def test_masks_of_cpus_below_65536_are_read_and_beyond_are_damage():
    """README (damaged journal): masks are parsed, CPUs below 65,536."""
    document = json.loads(encode(sample()))
    document["entries"]["24"]["original"] = "65535"
    assert decode(resealed(document)).entries[24].original == "65535"
    document["entries"]["24"]["original"] = "0-65536"
    with pytest.raises(StateError) as caught:
        decode(resealed(document), "/var/lib/irqagent/journal.json")
    assert str(caught.value) == (
        "journal /var/lib/irqagent/journal.json is damaged (entry for IRQ 24: original: CPU 65536 in '0-65536' "
        "is beyond the last possible CPU (65535)); it is not used. Check it, then move it aside"
    )


def test_a_state_dir_that_is_a_symlink_is_refused_as_one(tmp_path):
    """Linux answers O_DIRECTORY | O_NOFOLLOW on a symlink with ENOTDIR: the message must still say symlink."""
    (tmp_path / "real").mkdir(mode=0o700)
    os.symlink(tmp_path / "real", tmp_path / "state")
    for create in (False, True):
        with pytest.raises(StateError) as caught:
            StateDir(str(tmp_path / "state")).open(create=create)
        assert str(caught.value) == f"cannot open state directory {tmp_path}/state: is a symlink (not followed)"
    (tmp_path / "file").write_text("")
    with pytest.raises(StateError) as caught:
        StateDir(str(tmp_path / "file")).open(create=False)
    assert str(caught.value) == f"cannot open state directory {tmp_path}/file: Not a directory"
    assert os.listdir(tmp_path / "real") == []


# The file sample() is saved as (irqagent 0.1, schema irqagent.journal/2): keys sorted, no spaces, one line.
SAMPLE_FILE = (
    '{"boot_id":"0b5e2b8e-4f0e-4a57-9a43-3b8a0e4c2f11","default_smp_affinity":{"chip":"","file":"default_smp_affinity",'
    '"name":"","original":"fff,ffffffff","pending":null,"time":0.0,"written":"7f,ffffffff"},"entries":{"24":{"chip":'
    '"PCI-MSI","file":"smp_affinity_list","name":"virtio1-input.0","original":"0-299","pending":null,"time":1.5,'
    '"written":"0-254"}},"root":"/","schema":"irqagent.journal/2",'
    '"sha256":"8c17a4fb32d62ec5b05e55db97baef7b77f26979b613a51c6e5d5404da786d69"}\n'
)


def test_the_file_format_is_stable_and_its_checksum_is_sha256_of_the_canonical_body():
    import hashlib

    assert encode(sample()) == SAMPLE_FILE
    assert decode(SAMPLE_FILE) == sample()  # a journal written by this version is read by the next
    document = json.loads(SAMPLE_FILE)
    body = {key: document[key] for key in ("root", "boot_id", "entries", "default_smp_affinity")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert document["sha256"] == hashlib.sha256(canonical).hexdigest()


def damage_of(text, where="journal.json"):
    with pytest.raises(StateError) as caught:
        decode(text, where)
    message = str(caught.value)
    prefix, suffix = f"journal {where} is damaged (", "); it is not used. Check it, then move it aside"
    assert message.startswith(prefix) and message.endswith(suffix), message
    return message[len(prefix) : -len(suffix)]


def changed(change):
    document = json.loads(SAMPLE_FILE)
    change(document)
    return resealed(document)


def test_journal_relation_to_the_running_kernel():
    scope = Scope("/", "0b5e2b8e-4f0e-4a57-9a43-3b8a0e4c2f11")
    assert sample().relation(scope) == "current"
    assert sample().relation(Scope("/", "11111111-2222-3333-4444-555555555555")) == "stale"
    assert sample().relation(Scope("/srv/guest", scope.boot_id)) == "foreign"
    assert EMPTY.relation(Scope("/srv/guest", None)) == "current"  # nothing to be foreign about


def test_journal_describes_its_entries_and_root():
    assert sample().describe() == "2 entries of root /"
    assert replace(sample(), default_affinity=None).describe() == "1 entries of root /"


def test_a_journal_without_a_root_is_never_written():
    with pytest.raises(ValueError, match="a journal records its root"):
        encode(replace(sample(), root=None))


def test_size_bound_of_a_journal_text():
    assert damage_of(" " * ((64 << 20) + 1)) == "larger than 64 MiB"
    assert damage_of(" " * (64 << 20)).startswith("not JSON: ")  # 64 MiB exactly is parsed


def test_json_constants_are_not_numbers_nor_nulls():
    document = json.loads(SAMPLE_FILE)
    document["entries"]["24"]["pending"], document["entries"]["24"]["written"] = "0-254", None
    text = resealed(document)
    assert decode(text).entries[24].pending == "0-254"
    for constant in ("NaN", "Infinity", "-Infinity"):
        assert damage_of(text.replace('"written":null', f'"written":{constant}')) == f"{constant} is not a number"


def test_root_bounds():
    long_root = "/" + "r" * 4095
    assert decode(encode(replace(sample(), root=long_root))).root == long_root  # 4,096 characters: PATH_MAX
    assert damage_of(encode(replace(sample(), root=long_root + "r"))) == "root is not an absolute path"
    assert damage_of(encode(replace(sample(), root="/srv/\0guest"))) == "root is not an absolute path"
    assert damage_of(changed(lambda d: d.update(entries=[]))) == "entries is not an object"


def test_irq_key_bounds_and_quoting():
    def key(name):
        return lambda d: d["entries"].update({name: d["entries"].pop("24")})

    nine = decode(changed(key("999999999")))  # 9 digits: the largest IRQ number the reader takes
    assert list(nine.entries) == [999999999] and nine.entries[999999999].irq == 999999999
    assert damage_of(changed(key("1" * 30))) == f"IRQ key {'1' * 20!r} is not an IRQ number"


def test_entry_strings_are_bounded_at_256_kib():
    most = "n" * (1 << 18)
    assert decode(changed(lambda d: d["entries"]["24"].update(name=most))).entries[24].name == most
    padded = "0" * ((1 << 18) - 1) + "1"  # a cpulist of 262,144 characters: CPU 1
    assert decode(changed(lambda d: d["entries"]["24"].update(written=padded))).entries[24].written == padded
    what = "entry for IRQ 24"
    limit = "a string of at most 262144 characters"
    assert damage_of(changed(lambda d: d["entries"]["24"].update(name=most + "n"))) == f"{what}: name is not {limit}"
    assert damage_of(changed(lambda d: d["entries"]["24"].update(chip=5))) == f"{what}: chip is not {limit}"
    nullable = f"{what}: written is neither null nor {limit}"
    assert damage_of(changed(lambda d: d["entries"]["24"].update(written="0" + padded))) == nullable
    assert damage_of(changed(lambda d: d["entries"]["24"].update(written=5))) == nullable


def test_entry_messages_name_the_entry():
    def entry_zero(d):
        d["entries"]["0"] = d["entries"].pop("24")
        d["entries"]["0"]["time"] = -1

    assert damage_of(changed(entry_zero)) == "entry for IRQ 0: time is not a finite number"
    default = damage_of(changed(lambda d: d["default_smp_affinity"].update(time=-1)))
    assert default == "the default_smp_affinity entry: time is not a finite number"
    bad_file = damage_of(changed(lambda d: d["entries"]["24"].update(file="f" * 50)))
    assert bad_file == f"entry for IRQ 24: file {'f' * 40!r} is not one of smp_affinity_list, smp_affinity"


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_state_dir_repr_close_and_exit_release_the_directory(tmp_path):
    path = str(tmp_path / "state")
    state = StateDir(path)
    assert (repr(state), state.locked) == (f"StateDir(path={path!r}, fd=None, locked=False)", False)
    assert state.remove_stray_temps() == 0 and state.open(create=False) is False
    before = open_fds()
    with StateDir(path) as state:
        assert state.locked and open_fds() == before + 1
    assert (state.fd, state.locked, open_fds()) == (None, False, before)
    lone = StateDir(path)
    lone.open(create=False)
    assert open_fds() == before + 1
    del lone  # its __del__ closes the directory
    import gc

    gc.collect()
    assert open_fds() == before


def test_an_untrusted_state_dir_is_closed_again(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o777)
    before = open_fds()
    with pytest.raises(StateError, match="writable by group or others"):
        StateDir(str(state)).open(create=False)
    assert open_fds() == before


def test_the_lock_file_holds_our_pid_only_and_is_private(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "lock").write_text("1234567890123\n")
    os.chmod(state / "lock", 0o600)
    before = open_fds()
    with StateDir(str(state)):
        assert (state / "lock").read_text() == f"{os.getpid()}\n"
    assert open_fds() == before
    fresh = tmp_path / "fresh"
    with StateDir(str(fresh)):
        assert oct(os.stat(fresh / "lock").st_mode & 0o777) == "0o600"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own a file as another user")
def test_a_lock_file_of_another_user_is_left_alone(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "lock").write_text("theirs\n")
    os.chown(state / "lock", 65534, 65534)
    with StateDir(str(state)):
        assert (state / "lock").read_text() == "theirs\n"


@pytest.mark.parametrize(
    "content, holder",
    [
        (b"4242\n", "process 4242"),
        (b"", "another process"),
        (b"\xff\xfe\n", "another process"),
        (b"x1", "another process"),
    ],
)
def test_the_lock_message_names_the_holder_when_it_can(tmp_path, content, holder):
    path = str(tmp_path / "state")
    with StateDir(path):
        with open(os.path.join(path, "lock"), "wb") as handle:
            handle.write(content)
        before = open_fds()
        with pytest.raises(StateError) as caught:
            StateDir(path).lock()
        assert str(caught.value) == f"{holder} holds {path}: another irqagent apply, restore or run is active"
        del caught  # its traceback holds the refused StateDir, whose __del__ closes its directory
        import gc

        gc.collect()
        assert open_fds() == before  # and reading the PID left no file open


def test_the_lock_message_never_follows_a_lock_symlink(tmp_path):
    path = str(tmp_path / "state")
    (tmp_path / "elsewhere").write_text("4242\n")
    with StateDir(path):
        os.unlink(os.path.join(path, "lock"))
        os.symlink(tmp_path / "elsewhere", os.path.join(path, "lock"))
        with pytest.raises(StateError, match=r"^another process holds "):
            StateDir(path).lock()
        os.unlink(os.path.join(path, "lock"))
        with pytest.raises(StateError, match=r"^another process holds "):  # no lock file at all
            StateDir(path).lock()
        os.mkfifo(os.path.join(path, "lock"))  # never blocks on a FIFO
        with pytest.raises(StateError, match=r"^another process holds "):
            StateDir(path).lock()


def test_a_lock_error_other_than_contention_is_said(tmp_path, monkeypatch):
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(StateError) as caught:
        StateDir(str(tmp_path / "state")).lock()
    assert str(caught.value) == f"cannot lock {tmp_path}/state: No locks available"


def test_stray_temps_are_counted_and_removed_only_under_the_lock(tmp_path):
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    for name in (".journal.1", ".journal.2", "keep"):
        (path / name).write_text("")
    unlocked = StateDir(str(path))
    unlocked.open(create=False)
    assert unlocked.remove_stray_temps() == 0 and len(os.listdir(path)) == 3
    unlocked.close()
    with StateDir(str(path)) as state:
        assert state.remove_stray_temps() == 2
        assert sorted(os.listdir(path)) == ["keep", "lock"]
        assert state.remove_stray_temps() == 0


def test_permission_errors_hint_at_root_or_another_state_dir(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "makedirs", denied)
    with pytest.raises(StateError) as caught:
        JournalStore(str(tmp_path / "state")).save(sample())
    assert str(caught.value) == (
        f"cannot create state directory {tmp_path}/state: Permission denied "
        "(run as root, or choose another --state-dir)"
    )
    monkeypatch.undo()
    (tmp_path / "file").write_text("")
    with pytest.raises(StateError) as caught:
        JournalStore(str(tmp_path / "file" / "state")).save(sample())
    assert str(caught.value) == f"cannot create state directory {tmp_path}/file/state: Not a directory"


def test_load_refuses_what_is_not_a_regular_utf8_file_of_bounded_size(tmp_path, monkeypatch):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    store = JournalStore(str(state))
    journal = state / "journal.json"
    os.symlink(tmp_path / "elsewhere", journal)
    with pytest.raises(StateError) as caught:
        store.load()
    assert str(caught.value) == f"cannot read journal {journal}: it is a symlink (not followed)"
    os.unlink(journal)
    journal.mkdir()
    with pytest.raises(StateError) as caught:
        store.load()
    assert str(caught.value) == f"journal {journal} is not a regular file; it is not used. Move it aside"
    journal.rmdir()
    journal.write_bytes(b'{"schema": "\xff"}')
    with pytest.raises(StateError) as caught:
        store.load()
    assert str(caught.value) == f"journal {journal} is damaged (not UTF-8); it is not used"
    with open(journal, "wb") as handle:
        handle.truncate((64 << 20) + 1)  # sparse

    def never(*args):
        raise AssertionError("read a journal larger than the cap")

    monkeypatch.setattr(os, "read", never)
    with pytest.raises(StateError) as caught:
        store.load()
    assert str(caught.value) == f"journal {journal} is damaged (larger than 64 MiB); it is not used"


def test_load_reads_a_journal_of_several_mebibytes_whole(tmp_path):
    """Read in 1 MiB pieces: a 1.25 MiB journal (names of 256 KiB) comes back intact."""
    big = Journal(
        {irq: JournalEntry(irq, "0-3", "0", "PCI-MSI", "n" * (1 << 18), time=1.0) for irq in range(24, 29)}, root="/"
    )
    store = JournalStore(str(tmp_path / "state"))
    store.save(big)
    assert os.path.getsize(store.path) > 1 << 20
    before = open_fds()
    assert store.load() == big
    assert open_fds() == before


def test_a_read_error_is_a_state_error_and_the_file_is_closed(tmp_path, monkeypatch):
    store = JournalStore(str(tmp_path / "state"))
    store.save(sample())
    before = open_fds()

    def failing(*args):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "read", failing)
    with pytest.raises(StateError) as caught:
        store.load()
    assert str(caught.value) == f"cannot read journal {store.path}: Input/output error"
    monkeypatch.undo()
    assert open_fds() == before  # the journal file is closed (the state directory was open already)


def test_removing_the_journal_is_made_durable(tmp_path, monkeypatch):
    store = JournalStore(str(tmp_path / "state"))
    store.save(sample())
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    store.save(EMPTY)
    assert not os.path.exists(store.path) and synced == [store.state.fd]


def test_a_state_dir_that_vanishes_while_it_is_made_is_said(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "makedirs", lambda *args, **kwargs: None)  # made, then removed before the open
    with pytest.raises(StateError) as caught:
        StateDir(str(tmp_path / "state")).open(create=True)
    assert str(caught.value) == f"state directory {tmp_path}/state vanished while it was opened"


def test_loading_never_creates_the_state_dir(tmp_path):
    assert JournalStore(str(tmp_path / "state")).load() == EMPTY
    assert not os.path.exists(tmp_path / "state")


def test_a_fifo_journal_is_refused_without_blocking(tmp_path):
    store = JournalStore(str(tmp_path / "state"))
    store.save(sample())
    os.unlink(store.path)
    os.mkfifo(store.path, 0o600)
    with pytest.raises(StateError, match="is not a regular file"):
        store.load()


def test_ensure_current_relocks_a_recreated_directory_and_closes_the_old_one(tmp_path):
    import shutil

    path = str(tmp_path / "state")
    holder = StateDir(path).lock()
    before = open_fds()
    shutil.rmtree(path)
    holder.ensure_current()
    assert holder.locked and open_fds() == before  # the old directory closed, the new one open and locked
    with pytest.raises(StateError, match="holds"):
        StateDir(path).lock()
    holder.close()


def test_ensure_current_refuses_a_symlink_put_in_place_of_the_directory(tmp_path):
    path = str(tmp_path / "state")
    holder = StateDir(path).lock()
    os.rename(path, tmp_path / "moved")
    os.symlink(tmp_path / "moved", path)  # the same directory, behind a symlink: not the one opened
    before = open_fds()
    with pytest.raises(StateError) as caught:
        holder.ensure_current()
    assert str(caught.value) == (
        f"state directory {path} was removed or replaced: "
        f"cannot open state directory {path}: is a symlink (not followed)"
    )
    assert open_fds() == before  # the refused replacement was closed at once
    holder.close()


def sparse_journal(tmp_path, size):
    state = tmp_path / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    with open(state / "journal.json", "wb") as handle:
        handle.truncate(size)
    return JournalStore(str(state))


def test_a_journal_of_exactly_64_mib_is_read(tmp_path):
    """64 MiB is the cap, inclusive: such a file is read, then refused for what it holds."""
    store = sparse_journal(tmp_path, 64 << 20)
    with pytest.raises(StateError, match=r"is damaged \(not JSON: "):
        store.load()


@pytest.mark.parametrize("size", [(64 << 20) + 1, 66 << 20])
def test_a_journal_growing_past_its_stat_size_is_read_at_most_one_mib_past_the_cap(tmp_path, monkeypatch, size):
    """fstat said the file was small; it is larger when read (being appended to): reading stops past 64 MiB."""
    store = sparse_journal(tmp_path, size)
    real_fstat, real_read = os.fstat, os.read
    read = []

    def small(fd):
        info = real_fstat(fd)
        return os.stat_result(
            (info.st_mode, info.st_ino, info.st_dev, info.st_nlink, info.st_uid, info.st_gid, 0) + (0,) * 3
        )

    def counting(fd, count):
        data = real_read(fd, count)
        read.append(len(data))
        return data

    monkeypatch.setattr(os, "fstat", small)
    monkeypatch.setattr(os, "read", counting)
    with pytest.raises(StateError) as caught:
        store.load()
    assert (
        str(caught.value)
        == f"journal {store.path} is damaged (larger than 64 MiB); it is not used. Check it, then move it aside"
    )
    assert (64 << 20) < sum(read) <= (65 << 20)


def test_ensure_current_closes_a_replacement_it_cannot_lock(tmp_path):
    import shutil

    path = str(tmp_path / "state")
    holder = StateDir(path).lock()
    shutil.rmtree(path)
    other = StateDir(path).lock()  # a second writer made the directory again and holds it
    before = open_fds()
    try:
        holder.ensure_current()
    except StateError as exc:
        assert "removed or replaced" in str(exc) and " holds " in str(exc)
        assert open_fds() == before  # closed at once, not when the exception is collected
    else:
        raise AssertionError("a directory another writer holds was taken")
    other.close()
    holder.close()
