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
from irqagent.journal import EMPTY, Journal, JournalEntry, JournalStore, JournalWriteError, StateLock, decode, encode
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
