"""Reading a finished run's log into loss series: ``losstrend.record_file(path)``.

Four formats, told apart by the file's name (and, for a name that says nothing, by its first
character):

- a Hugging Face ``trainer_state.json`` (or a checkpoint directory holding one): each
  ``log_history`` entry's ``loss`` is a training point, its ``eval_loss`` an eval point;
- a CSV file with a header, such as Keras' ``CSVLogger`` (``epoch,loss,val_loss``) or
  Lightning's ``CSVLogger`` (``metrics.csv``, whose empty cells are skipped);
- JSONL: one JSON object per line, with a loss key (``loss``, ``train_loss``, ``eval_loss``...);
- TensorBoard event files (``events.out.tfevents.*``, or a directory of them), read through
  ``tensorboard``'s own event reader (an optional dependency).

Which key or tag is which series: :func:`series_of_key`. Files are JSON, CSV or protobuf event
records: nothing is unpickled. A file that cannot be parsed is a :class:`LogFileError` naming
the file and the line. Imports nothing above the standard library, except ``tensorboard`` for
event files, lazily.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

__all__ = ["LogFileError", "read_log", "series_of_key"]

#: The keys and tags read as the training loss, and as the validation loss (compared in lower
#: case, with "/" "." "-" and " " read as "_").
TRAIN_KEYS = frozenset({"loss", "train_loss", "training_loss", "loss_train", "train_loss_step",
                        "loss_step", "train_loss_epoch"})
EVAL_KEYS = frozenset({"eval_loss", "val_loss", "valid_loss", "validation_loss", "loss_val",
                       "loss_eval", "loss_validation", "val_loss_epoch", "eval_loss_epoch"})


class LogFileError(ValueError):
    """A log file that cannot be read as loss series: the message names the file (and the
    line, where there is one) and what was wrong."""


def series_of_key(key: str) -> str | None:
    """``"train"`` or ``"eval"`` for a log key or TensorBoard tag that holds that loss; None
    for any other key.

    Example:
        >>> series_of_key("loss"), series_of_key("val_loss"), series_of_key("train/loss")
        ('train', 'eval', 'train')
        >>> series_of_key("learning_rate") is None
        True
    """
    k = re.sub(r"[/.\- ]", "_", key.strip().lower())
    if k in TRAIN_KEYS:
        return "train"
    if k in EVAL_KEYS:
        return "eval"
    return None


def read_log(path: str | os.PathLike[str]) -> dict[str, list[float]]:
    """The loss series a finished run's log holds: ``{"train": [...], "eval": [...]}`` (only
    the series it has, in step order).

    Raises :class:`LogFileError` for a file it cannot parse (naming the file and the line) or
    that holds no loss, ``FileNotFoundError`` for a path that does not exist, and
    ``ModuleNotFoundError`` naming ``tensorboard`` for event files without it.

    Example:
        >>> read_log("out/checkpoint-40/trainer_state.json")
        {'train': [2.31, 2.05, ...], 'eval': [2.12, 1.87]}
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"record_file(): no such file or directory: {str(p)!r}")
    if p.is_dir():
        found = _in_directory(p)
        return read_log(found) if found.is_file() else _tensorboard(found)
    name = p.name.lower()
    if "tfevents" in name:
        out = _tensorboard(p)
    elif name.endswith((".jsonl", ".ndjson")):
        out = _jsonl(p)
    elif name.endswith((".csv", ".tsv")):
        out = _csv(p)
    elif name.endswith(".json"):
        out = _json(p)
    else:
        text = _text(p)
        start = text.lstrip()[:1]
        if start == "{":
            out = _json(p, text) if _one_document(text) else _jsonl(p, text)
        elif start:
            out = _csv(p, text)
        else:
            out = {}
    out = {k: v for k, v in out.items() if v}
    if not out:
        raise LogFileError(
            f"{p}: holds no loss values (looked for the keys {sorted(TRAIN_KEYS)[:3]} and "
            f"{sorted(EVAL_KEYS)[:3]}, among others)"
        )
    return out


def _in_directory(p: Path) -> Path:
    """The log inside a directory: its trainer_state.json, else the directory itself when it
    holds TensorBoard event files."""
    state = p / "trainer_state.json"
    if state.is_file():
        return state
    if any("tfevents" in f.name for f in p.rglob("*") if f.is_file()):
        return p
    raise LogFileError(
        f"{p}: a directory without a trainer_state.json or TensorBoard event files; pass the "
        "log file itself"
    )


def _text(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = p.read_bytes()[: exc.start].count(b"\n") + 1
        raise LogFileError(f"{p}:{line}: not UTF-8 text ({exc.reason}); record_file() reads "
                           "JSON, JSONL, CSV and TensorBoard event files") from None


def _one_document(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _number(p: Path, line: int, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise LogFileError(f"{p}:{line}: {key!r} is {value!r:.60}, not a number")
    try:
        return float(value)
    except (ValueError, OverflowError):
        raise LogFileError(f"{p}:{line}: {key!r} is {value!r:.60}, not a number") from None


def _json(p: Path, text: str | None = None) -> dict[str, list[float]]:
    text = _text(p) if text is None else text
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LogFileError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg}, column "
                           f"{exc.colno})") from None
    if isinstance(doc, list):
        entries = doc
    elif isinstance(doc, dict) and isinstance(doc.get("log_history"), list):
        entries = doc["log_history"]
    else:
        raise LogFileError(
            f"{p}: a JSON file record_file() reads is a Hugging Face trainer_state.json (an "
            "object with a 'log_history' list) or a list of objects with a loss key"
        )
    out: dict[str, list[float]] = {}
    lines = _entry_lines(text, len(entries))
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise LogFileError(f"{p}:{lines[i]}: log entry {i} is {type(entry).__name__}, "
                               "not an object")
        _take(p, lines[i], entry, out)
    return out


def _entry_lines(text: str, n: int) -> list[int]:
    """The line each of the first-level objects of a JSON list starts on (best effort: the
    lines holding an opening brace at the list's depth), for error messages."""
    starts: list[int] = []
    depth = 0
    in_str = esc = False
    line = 1
    for ch in text:
        if ch == "\n":
            line += 1
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if ch == "{" and depth == (3 if text.lstrip().startswith("{") else 2):
                starts.append(line)
        elif ch in "]}":
            depth -= 1
    return starts + [line] * max(0, n - len(starts))


def _take(p: Path, line: int, entry: dict[str, object], out: dict[str, list[float]]) -> None:
    for key, value in entry.items():
        name = series_of_key(str(key))
        if name is not None and value is not None and value != "":
            out.setdefault(name, []).append(_number(p, line, str(key), value))


def _jsonl(p: Path, text: str | None = None) -> dict[str, list[float]]:
    text = _text(p) if text is None else text
    out: dict[str, list[float]] = {}
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise LogFileError(f"{p}:{line}: not a JSON object ({exc.msg}, column "
                               f"{exc.colno}): {raw.strip()[:60]!r}") from None
        if not isinstance(entry, dict):
            raise LogFileError(f"{p}:{line}: a JSONL log holds one object per line, this one "
                               f"is {type(entry).__name__}")
        _take(p, line, entry, out)
    return out


def _csv(p: Path, text: str | None = None) -> dict[str, list[float]]:
    text = _text(p) if text is None else text
    lines = text.splitlines()
    if not lines:
        return {}
    delimiter = "\t" if "\t" in lines[0] and "," not in lines[0] else ","
    rows = csv.reader(lines, delimiter=delimiter)
    header = next(rows)
    columns = [(i, h.strip(), series_of_key(h)) for i, h in enumerate(header)]
    wanted = [(i, h, s) for i, h, s in columns if s is not None]
    if not wanted:
        raise LogFileError(f"{p}:1: no loss column in the header ({', '.join(header)[:120]}); "
                           "record_file() reads 'loss' as the training loss and 'val_loss' as "
                           "the validation loss")
    out: dict[str, list[float]] = {}
    for line, row in enumerate(rows, start=2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise LogFileError(f"{p}:{line}: {len(row)} fields where the header has "
                               f"{len(header)}")
        for i, h, s in wanted:
            cell = row[i].strip()
            if cell and s is not None:
                out.setdefault(s, []).append(_number(p, line, h, cell))
    return out


def _tensorboard(p: Path) -> dict[str, list[float]]:
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"record_file({str(p)!r}): reading TensorBoard event files needs the 'tensorboard' "
            "package (its event reader, without TensorFlow): pip install tensorboard"
        ) from None
    acc = event_accumulator.EventAccumulator(
        str(p), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0}
    )
    try:
        acc.Reload()
    except Exception as exc:
        raise LogFileError(f"{p}: not a readable TensorBoard event file ({exc!r:.160})") from None
    tags = acc.Tags()
    points: dict[str, dict[int, float]] = {}
    for tag in tags.get("scalars", []):
        name = series_of_key(tag)
        if name is not None:
            for ev in acc.Scalars(tag):
                points.setdefault(name, {})[int(ev.step)] = float(ev.value)
    for tag in tags.get("tensors", []):
        name = series_of_key(tag)
        if name is None:
            continue
        from tensorboard.util import tensor_util

        for tev in acc.Tensors(tag):
            arr = tensor_util.make_ndarray(tev.tensor_proto)
            if arr.size == 1:
                points.setdefault(name, {})[int(tev.step)] = float(arr.reshape(()))
    return {name: [by_step[s] for s in sorted(by_step)] for name, by_step in points.items()}

