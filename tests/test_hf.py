"""``losstrend.hf_callback()`` on a real Hugging Face ``Trainer`` run: a one-layer GPT-2 built
from a config (nothing downloaded), on the CPU, memorising a handful of random token sequences
for a few dozen optimizer steps.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

# Nothing is fetched from the Hub: the model is built from a config.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from pytest_losstrend import LossTrend  # noqa: E402
from pytest_losstrend.fixture import LossTrendStop  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning",
                                        "ignore::FutureWarning")

VOCAB, LENGTH = 64, 16


class Tokens(torch.utils.data.Dataset):  # type: ignore[misc]
    """``n`` fixed random sequences, each its own labels (a causal LM learns to repeat them)."""

    def __init__(self, n: int = 16, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, VOCAB, (n, LENGTH), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _model() -> Any:
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=VOCAB,
                                     n_positions=32)
    return transformers.GPT2LMHeadModel(config)


def _llama() -> Any:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2,
                                      vocab_size=VOCAB, max_position_embeddings=32)
    return transformers.LlamaForCausalLM(config)


def _train(lt: LossTrend, tmp_path: Path, *, lr: float = 5e-3, steps: int = 40,
           model: Any = None, **args: Any) -> Any:
    settings: dict[str, Any] = {
        "output_dir": str(tmp_path / "out"), "max_steps": steps, "learning_rate": lr,
        "per_device_train_batch_size": 8, "logging_steps": 1, "report_to": [],
        "use_cpu": True, "save_strategy": "no", "disable_tqdm": True, "seed": 0,
        "lr_scheduler_type": "constant", "warmup_steps": 0,
    }
    settings.update(args)
    trainer = transformers.Trainer(
        model=model if model is not None else _model(),
        args=transformers.TrainingArguments(**settings),
        train_dataset=Tokens(), eval_dataset=Tokens(8, seed=0),
        callbacks=[lt.hf_callback()],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    return trainer


def test_healthy_run_passes_with_one_point_per_step(tmp_path: Path) -> None:
    lt = LossTrend()
    trainer = _train(lt, tmp_path, eval_strategy="steps", eval_steps=20)
    losses = lt.losses()
    assert len(losses) == 40
    logged = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses == pytest.approx(logged)
    assert losses[0] == pytest.approx(math.log(VOCAB), rel=0.1)
    verdict = lt.check()
    assert verdict.ok, verdict.reason
    assert len(lt.losses("eval")) == 2
    lt.finish_watching()
    assert lt.evidence is not None and lt.evidence.optimizer_steps == 40
    assert lt.evidence.optimizer == "AdamW"


def test_logging_steps_above_one_is_a_clear_error(tmp_path: Path) -> None:
    lt = LossTrend()
    with pytest.raises(ValueError, match=r"logging_steps=5\).*set logging_steps=1"):
        _train(lt, tmp_path, logging_steps=5)
    assert lt.losses() == []


def test_nan_filter_note_is_in_the_evidence(tmp_path: Path) -> None:
    lt = LossTrend()
    _train(lt, tmp_path, steps=3)
    assert lt.evidence is not None
    assert any("logging_nan_inf_filter" in n for n in lt.evidence.notes)


def test_fail_fast_stops_training(tmp_path: Path) -> None:
    lt = LossTrend(fail_fast=True)
    with pytest.raises(LossTrendStop) as info:
        _train(lt, tmp_path, lr=1e6, steps=200, logging_nan_inf_filter=False,
               max_grad_norm=0.0)
    assert len(lt.losses()) < 200
    assert "stopped" in str(info.value)


def test_trainer_state_json_is_read_by_record_file(tmp_path: Path) -> None:
    """The trainer_state.json the Trainer itself writes with a checkpoint."""
    lt = LossTrend()
    _train(lt, tmp_path, steps=20, save_strategy="steps", save_steps=20,
           eval_strategy="steps", eval_steps=10)
    state = next((tmp_path / "out").glob("checkpoint-*/trainer_state.json"))
    assert json.loads(state.read_text())["log_history"]
    again = LossTrend()
    got = again.record_file(state)
    assert got["train"] == pytest.approx(lt.losses())
    assert got["eval"] == pytest.approx(lt.losses("eval"))
    # The checkpoint directory works too.
    assert LossTrend().record_file(state.parent)["train"] == pytest.approx(lt.losses())


def test_llama_with_gradient_accumulation(tmp_path: Path) -> None:
    """One point per optimizer step (the mean of its two accumulated batches), and it learns."""
    lt = LossTrend()
    trainer = _train(lt, tmp_path, model=_llama(), steps=20, gradient_accumulation_steps=2,
                     per_device_train_batch_size=4, lr=1e-2)
    assert trainer.state.global_step == 20
    assert len(lt.losses()) == 20
    verdict = lt.check()
    assert verdict.ok, verdict.reason
