"""The RL search's resume checkpoint, committed atomically: agent, replay buffer and state.

A kill -9 can land in the middle of a checkpoint, which writes three files (agent.pt,
actor.pt, replay_buffer.npz; :mod:`haq_rl.agent.checkpoint`). So all are first written
under pending names; search_state.json
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

from haq_rl.errors import CheckpointError, DataFormatError
from haq_rl.fileio import file_sha256, open_regular, read_json, write_json_atomic
from haq_rl.run.episodes import read_episode_rows
from haq_rl.run.layout import (
    ACTOR_FILE,
    AGENT_FILE,
    EPISODES_FILE,
    LEGACY_AGENT_FILES,
    REPLAY_FILE,
    STATE_FILE,
)

#: Where each checkpoint file is written before the commit.
PENDING_FILES = {AGENT_FILE: "agent.pending.pt", ACTOR_FILE: "actor.pending.pt",
                 REPLAY_FILE: "replay_buffer.pending.npz"}


def save_checkpoint(agent: Any, run_dir: Path, state: dict[str, Any]) -> None:
    """Save ``agent`` with its replay buffer and commit ``state`` (e.g. the episode count) with them."""
    from haq_rl.agent import save_agent

    pending = {final: run_dir / name for final, name in PENDING_FILES.items()}
    save_agent(agent, pending[AGENT_FILE], pending[ACTOR_FILE], pending[REPLAY_FILE])
    digests = {final: _synced_digest(path) for final, path in pending.items()}
    write_json_atomic(run_dir / STATE_FILE, {**state, "files_sha256": digests})
    for final, path in pending.items():
        os.replace(path, run_dir / final)


def read_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The committed state (None before the first checkpoint), its files put in place."""
    state: Any = read_json(run_dir / STATE_FILE) if (run_dir / STATE_FILE).is_file() else None
    if state is not None and not (isinstance(state, dict) and isinstance(state.get("episodes_done"), int)
                                  and isinstance(state.get("files_sha256", {}), dict)):
        raise CheckpointError(f"{run_dir / STATE_FILE} is not a haq-rl search state (no episodes_done count)")
    digests = (state or {}).get("files_sha256", {})
    legacy = sorted(set(digests) & set(LEGACY_AGENT_FILES))
    if legacy:
        raise CheckpointError(f"{run_dir} holds an agent of an earlier haq-rl ({', '.join(legacy)}: pickles, "
                              "which are never loaded); start a new search")
    for final, name in PENDING_FILES.items():
        pending = run_dir / name
        if not pending.is_file():
            continue
        if digests.get(final) == file_sha256(pending):
            os.replace(pending, run_dir / final)  # committed, not yet moved when the run died
        else:
            pending.unlink()  # the run died before committing it
    for final, digest in digests.items():
        if (run_dir / final).is_file() and file_sha256(run_dir / final) != digest:
            raise CheckpointError(f"{run_dir / final} is not the file the last checkpoint wrote (its sha256 "
                                  f"differs from {STATE_FILE}'s); the run cannot resume")
    return state


def refuse_lost_rows(run_dir: Path) -> None:
    """Refuse to resume a log with fewer rows than the agent's checkpoint (a cut or replaced
    log): the agent learned from rows that are gone, and resuming would record other rows
    in their place. Called before the resume touches anything (it cuts a torn row and
    rewrites the policy files from the log)."""
    state = read_checkpoint(run_dir)
    done = int(state["episodes_done"]) if state else 0
    rows = len(read_episode_rows(run_dir / EPISODES_FILE)) if done else 0
    if rows < done:
        raise DataFormatError(f"{run_dir / EPISODES_FILE} holds {rows} episode rows but the agent's checkpoint "
                              f"is after {done}: rows were lost; restore the file or start a new search")


def _synced_digest(path: Path) -> str:
    """The file's digest, after forcing it to disk (the commit must not outrun the data)."""
    with open_regular(path, "rb+") as stream:
        os.fsync(stream.fileno())
    return file_sha256(path)
