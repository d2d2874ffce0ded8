"""The RL search's resume checkpoint, committed atomically: agent, replay buffer and state.

A kill -9 can land in the middle of a checkpoint, and SB3 writes the agent's zip and the
replay buffer in place. So both are first written under pending names; search_state.json
(one atomic write) is the commit point and records their digests; only then do the
pending files replace the previous ones. On resume, a pending file whose digest the
state names is moved into place (the kill came after the commit) and any other pending
file is dropped (it came before): the agent, its replay buffer and the episode count
always belong to the same moment of the run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from haq_rl.fileio import file_sha256, read_json, write_json_atomic
from haq_rl.run.layout import AGENT_FILE, REPLAY_FILE, STATE_FILE

#: Where each checkpoint file is written before the commit.
PENDING_FILES = {AGENT_FILE: "agent.pending.zip", REPLAY_FILE: "replay_buffer.pending.pkl"}


def save_checkpoint(agent: Any, run_dir: Path, state: dict[str, Any]) -> None:
    """Save ``agent`` with its replay buffer and commit ``state`` (e.g. the episode count) with them."""
    from haq_rl.agent import save_agent

    pending = {final: run_dir / name for final, name in PENDING_FILES.items()}
    save_agent(agent, pending[AGENT_FILE], pending[REPLAY_FILE])
    digests = {final: _synced_digest(path) for final, path in pending.items()}
    write_json_atomic(run_dir / STATE_FILE, {**state, "files_sha256": digests})
    for final, path in pending.items():
        os.replace(path, run_dir / final)


def read_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The committed state (None before the first checkpoint), its files put in place."""
    state: dict[str, Any] | None = read_json(run_dir / STATE_FILE) if (run_dir / STATE_FILE).is_file() else None
    digests = (state or {}).get("files_sha256", {})
    for final, name in PENDING_FILES.items():
        pending = run_dir / name
        if not pending.is_file():
            continue
        if digests.get(final) == file_sha256(pending):
            os.replace(pending, run_dir / final)  # committed, not yet moved when the run died
        else:
            pending.unlink()  # the run died before committing it
    return state


def _synced_digest(path: Path) -> str:
    """The file's digest, after forcing it to disk (the commit must not outrun the data)."""
    with open(path, "rb+") as stream:
        os.fsync(stream.fileno())
    return file_sha256(path)
