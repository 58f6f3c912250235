"""Files on disk: written atomically (a temporary file beside the target, then a rename), so a
reader never sees half a report or half a baseline, and the temporary files of a writer killed
mid-write are cleared by the next write.

Shared by the reports and the baselines; imports nothing of the package.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomic(path: str | os.PathLike[str], doc: Any) -> Path:
    """Write ``doc`` as JSON to ``path`` through a temporary file and a rename."""
    # No indent: with one, every loss takes a line and json falls back to its pure-Python
    # encoder (165 ms against 84 ms for 200 tests x 500 steps, and 22% larger).
    text = json.dumps(doc, allow_nan=False, default=_json_default) + "\n"
    return write_text_atomic(path, text)


def _json_default(obj: Any) -> Any:
    return str(obj)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(target)
    # The writer's pid is in the name, so that a later write can tell an orphan (its writer
    # was killed between the write and the rename) from another session's write in flight.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp",
                               dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        # mkstemp makes the file private (0600); a report or baseline gets the usual mode.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _remove_orphans(target: Path) -> None:
    """Delete the temporary files that writers of ``target`` killed mid-write left behind."""
    for tmp in target.parent.glob(f".{glob_escape(target.name)}.*.tmp"):
        pid = tmp.name[len(target.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    """``name`` with the characters glob treats as patterns taken literally."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or a platform without signal 0: assume alive
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
