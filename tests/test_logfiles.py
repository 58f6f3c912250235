"""``losstrend.record_file(path)``: a finished run's log read into series and judged like
recorded ones. Each format's file is written in the test: by hand (JSONL, a trainer_state.json
shaped like the Trainer's), by a real Keras ``CSVLogger`` and by torch's TensorBoard
``SummaryWriter`` (the Trainer's own trainer_state.json is read in ``test_hf.py``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pytest_losstrend import LossTrend
from pytest_losstrend.capture.logfiles import LogFileError, read_log, series_of_key
from pytest_losstrend.fixture import LossTrendStop

FALLING = [2.3 * math.exp(-i / 15) + 0.05 * ((-1) ** i) for i in range(40)]
RISING = [0.5 * math.exp(i / 12) for i in range(40)]


def _trainer_state(path: Path, train: list[float], evals: list[float]) -> Path:
    history: list[dict[str, float]] = [
        {"epoch": i / 10, "grad_norm": 1.0, "learning_rate": 1e-3, "loss": v, "step": i + 1}
        for i, v in enumerate(train)
    ]
    for j, v in enumerate(evals):
        history.append({"epoch": j, "eval_loss": v, "eval_runtime": 0.1, "step": 10 * (j + 1)})
    path.write_text(json.dumps({"global_step": len(train), "log_history": history}, indent=2))
    return path


def test_trainer_state_json(tmp_path: Path) -> None:
    state = _trainer_state(tmp_path / "trainer_state.json", FALLING, [2.0, 1.5, 1.2])
    lt = LossTrend()
    got = lt.record_file(state)
    assert got == {"train": pytest.approx(FALLING), "eval": [2.0, 1.5, 1.2]}
    assert lt.check().ok
    assert lt.check(series="eval").ok


def test_series_renames_train_and_eval(tmp_path: Path) -> None:
    state = _trainer_state(tmp_path / "trainer_state.json", FALLING, [2.0, 1.5])
    lt = LossTrend()
    lt.record_file(state, series="nightly")
    assert lt.series_names == ["nightly", "nightly_eval"]


def test_rising_log_fails_with_the_same_verdict(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text("".join(json.dumps({"step": i, "loss": v}) + "\n"
                            for i, v in enumerate(RISING)))
    lt = LossTrend()
    lt.record_file(path)
    verdict = lt.check()
    assert not verdict.ok
    assert verdict.diagnoses


def test_nan_in_a_log_stops_under_fail_fast(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text('{"loss": 2.0}\n{"loss": 1.5}\n{"loss": NaN}\n')
    with pytest.raises(LossTrendStop):
        LossTrend(fail_fast=True).record_file(path)


def test_jsonl_with_eval_lines_and_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": 1, "train/loss": 2.0, "lr": 0.1}, {"step": 1, "val_loss": 2.1},
             {"step": 2, "train/loss": 1.5}, {"note": "no loss here"}, {"step": 3, "loss": 1.0}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    assert read_log(path) == {"train": [2.0, 1.5, 1.0], "eval": [2.1]}


def test_keras_csvlogger_file(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    import numpy as np

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1))).astype("float32")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    log = tmp_path / "training.csv"
    history = model.fit(x, y, epochs=12, batch_size=32, validation_split=0.25, verbose=0,
                        callbacks=[keras.callbacks.CSVLogger(str(log))])
    assert log.read_text().splitlines()[0].startswith("epoch,")
    lt = LossTrend()
    got = lt.record_file(log)
    assert got["train"] == pytest.approx(history.history["loss"], rel=1e-5)
    assert got["eval"] == pytest.approx(history.history["val_loss"], rel=1e-5)
    assert lt.check(min_points=10).ok


def test_lightning_style_csv_skips_empty_cells(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train_loss,val_loss\n0,0,2.0,\n0,1,1.8,\n0,1,,1.9\n0,2,1.2,\n")
    assert read_log(path) == {"train": [2.0, 1.8, 1.2], "eval": [1.9]}


def test_tensorboard_event_file(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    torch_tb = pytest.importorskip("torch.utils.tensorboard")
    writer = torch_tb.SummaryWriter(log_dir=str(tmp_path / "tb"))
    for step, v in enumerate(FALLING):
        writer.add_scalar("train/loss", v, step)
        writer.add_scalar("learning_rate", 0.1, step)
        if step % 10 == 9:
            writer.add_scalar("val/loss", v + 0.1, step)
    writer.close()
    event_file = next((tmp_path / "tb").glob("events.out.tfevents.*"))
    for target in (event_file, tmp_path / "tb"):
        lt = LossTrend()
        got = lt.record_file(target)
        assert got["train"] == pytest.approx(FALLING, rel=1e-6)
        assert got["eval"] == pytest.approx([FALLING[i] + 0.1 for i in (9, 19, 29, 39)])
        assert lt.check().ok


def test_tensorboard_missing_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    path = tmp_path / "events.out.tfevents.123.host"
    path.write_bytes(b"\x00" * 16)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "tensorboard.backend", None)
    monkeypatch.setitem(sys.modules, "tensorboard.backend.event_processing", None)
    with pytest.raises(ModuleNotFoundError, match="pip install tensorboard"):
        read_log(path)


def test_broken_json_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "trainer_state.json"
    path.write_text('{\n  "log_history": [\n    {"loss": 2.0, "step": 1},\n    {"loss": 1.9,, '
                    '"step": 2}\n  ]\n}\n')
    with pytest.raises(LogFileError, match=r"trainer_state\.json:4: not valid JSON"):
        LossTrend().record_file(path)


def test_broken_jsonl_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text('{"loss": 2.0}\n{"loss": 1.8}\n{"loss": 1.6\n{"loss": 1.5}\n')
    with pytest.raises(LogFileError, match=r"run\.jsonl:3: not a JSON object"):
        read_log(path)


def test_non_numeric_value_names_the_line(tmp_path: Path) -> None:
    csv_path = tmp_path / "log.csv"
    csv_path.write_text("epoch,loss\n0,2.0\n1,oops\n")
    with pytest.raises(LogFileError, match=r"log\.csv:3: 'loss' is 'oops', not a number"):
        read_log(csv_path)
    state = _trainer_state(tmp_path / "trainer_state.json", [2.0, 1.0], [])
    doc = json.loads(state.read_text())
    doc["log_history"][1]["loss"] = [1.0]
    state.write_text(json.dumps(doc, indent=2))
    # The second entry starts on line 11 of the indented file.
    with pytest.raises(LogFileError, match=r"trainer_state\.json:11: 'loss' is \[1\.0\]"):
        read_log(state)


def test_ragged_csv_row_is_named(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss,val_loss\n0,2.0,2.1\n1,1.5\n")
    with pytest.raises(LogFileError, match=r"log\.csv:3: 2 fields where the header has 3"):
        read_log(path)


def test_a_file_without_loss_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("epoch,accuracy\n0,0.5\n")
    with pytest.raises(LogFileError, match=r"log\.csv:1: no loss column"):
        read_log(path)
    other = tmp_path / "config.json"
    other.write_text('{"lr": 0.1}')
    with pytest.raises(LogFileError, match=r"trainer_state\.json"):
        read_log(other)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        LossTrend().record_file(tmp_path / "nope.jsonl")


def test_unnamed_file_is_sniffed(tmp_path: Path) -> None:
    jsonl = tmp_path / "log.txt"
    jsonl.write_text('{"loss": 2}\n{"loss": 1}\n')
    assert read_log(jsonl) == {"train": [2.0, 1.0]}
    csv_path = tmp_path / "log.out"
    csv_path.write_text("loss,val_loss\n2,3\n1,2\n")
    assert read_log(csv_path) == {"train": [2.0, 1.0], "eval": [3.0, 2.0]}


@pytest.mark.parametrize(("key", "series"), [
    ("loss", "train"), ("train_loss", "train"), ("Loss/train", "train"), ("train/loss", "train"),
    ("eval_loss", "eval"), ("val_loss", "eval"), ("val/loss", "eval"), ("validation_loss", "eval"),
    ("accuracy", None), ("learning_rate", None), ("train_runtime", None),
])
def test_series_of_key(key: str, series: str | None) -> None:
    assert series_of_key(key) == series


def test_nothing_is_unpickled(tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "run.pkl"
    path.write_bytes(pickle.dumps({"loss": [1.0, 0.5]}))
    with pytest.raises(LogFileError):
        read_log(path)
