"""Files of a resumable run: atomic JSON, the run config check, data fingerprints, errors."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CheckpointError", "ResumeConfigError", "atomic_write_text", "atomic_write_json",
           "fingerprint", "check_run_config", "RUN_CONFIG"]

RUN_CONFIG = "run_config.json"


class CheckpointError(ValueError):
    """A checkpoint folder is corrupt or unreadable."""


class ResumeConfigError(ValueError):
    """A resume was asked for with a configuration other than the one the checkpoint holds."""


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "a.txt"
        >>> atomic_write_text(p, "hi")
        >>> p.read_text()
        'hi'
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """:func:`atomic_write_text` of ``json.dumps(obj, indent=2)``."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def fingerprint(x: Any) -> str:
    """A short SHA-256 of an array's shape, dtype and bytes (identifies the data of a run).

    Example:
        >>> fingerprint(np.zeros((2, 2), np.float32)) == fingerprint(np.zeros((2, 2), np.float32))
        True
    """
    if x is None:
        return "none"
    arr = np.ascontiguousarray(x)
    h = hashlib.sha256(f"{arr.shape}{arr.dtype.str}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()[:16]


def _has_checkpoint(directory: Path) -> bool:
    return (directory / "ckpt" / "checkpoint").exists() or (directory / RUN_CONFIG).exists()


def check_run_config(directory: str | os.PathLike, config: dict, *, resume: bool) -> bool:
    """Record ``config`` in ``directory`` or, on resume, check it against the recorded one.

    Args:
        directory: The checkpoint folder.
        config: JSON-able description of the run (flow, data fingerprints, fit arguments).
        resume: Continue the run recorded in ``directory``.

    Returns:
        Whether there is an earlier run to resume.

    Raises:
        ResumeConfigError: On resume, if the recorded config differs from ``config`` (the
            message names every differing key), or without resume, if ``directory`` already
            holds a run.
        CheckpointError: If the recorded config is unreadable.
    """
    directory = Path(directory)
    path = directory / RUN_CONFIG
    config = json.loads(json.dumps(config))  # normalise tuples -> lists
    if _has_checkpoint(directory):
        if not resume:
            raise ResumeConfigError(
                f"checkpoint_dir {str(directory)!r} already holds a run; pass resume=True to "
                "continue it, or choose an empty folder")
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError as err:
            raise CheckpointError(f"{path} is missing: {directory} holds checkpoints without "
                                  "the config of their run; delete the folder to start over"
                                  ) from err
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{path} is corrupt ({err}); delete {directory} to start "
                                  "over") from err
        diffs = [f"{k}: checkpoint has {saved.get(k)!r}, now {config.get(k)!r}"
                 for k in sorted(set(saved) | set(config)) if saved.get(k) != config.get(k)]
        if diffs:
            raise ResumeConfigError(
                f"cannot resume from {str(directory)!r}: it was written by a run with a "
                "different config (" + "; ".join(diffs) + "). Use the same arguments, or a new "
                "folder to start a new run")
        return (directory / "ckpt" / "checkpoint").exists()
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, config)
    return False
