"""The RL checkpoint's commit protocol: a kill inside a checkpoint never mixes two of them."""

import hashlib

from haq_rl.fileio import write_json_atomic
from haq_rl.run.layout import AGENT_FILE, REPLAY_FILE, STATE_FILE
from haq_rl.search.checkpoint import PENDING_FILES, read_checkpoint


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_committed_pending_files_move_in_and_uncommitted_ones_are_dropped(tmp_path):
    assert read_checkpoint(tmp_path) is None
    (tmp_path / AGENT_FILE).write_bytes(b"old agent")
    (tmp_path / REPLAY_FILE).write_bytes(b"old replay")
    # Killed after the commit (state names the new files) but before they were moved.
    (tmp_path / PENDING_FILES[AGENT_FILE]).write_bytes(b"new agent")
    (tmp_path / PENDING_FILES[REPLAY_FILE]).write_bytes(b"new replay")
    write_json_atomic(tmp_path / STATE_FILE, {"episodes_done": 4, "files_sha256": {
        AGENT_FILE: _sha(b"new agent"), REPLAY_FILE: _sha(b"new replay")}})
    assert read_checkpoint(tmp_path)["episodes_done"] == 4
    assert (tmp_path / AGENT_FILE).read_bytes() == b"new agent"
    assert (tmp_path / REPLAY_FILE).read_bytes() == b"new replay"
    # Killed while writing the next checkpoint, before its commit: the pending file is dropped.
    (tmp_path / PENDING_FILES[AGENT_FILE]).write_bytes(b"torn ag")
    assert read_checkpoint(tmp_path)["episodes_done"] == 4
    assert (tmp_path / AGENT_FILE).read_bytes() == b"new agent"
    assert not (tmp_path / PENDING_FILES[AGENT_FILE]).exists()
