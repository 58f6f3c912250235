"""The Hugging Face ``Trainer`` on a one-layer GPT-2 built from a config (nothing downloaded):
token sequences that count up by one from a random start (learnable), batches of 8, AdamW,
``logging_steps=1``, 30 optimizer steps on the CPU.

Faults (labelled in ``bench_adoption.EXPECTED`` before any run):
- ``lr_x100``: lr 5e-3 -> 0.5;
- ``param_left_out``: ``optimizers=(AdamW(the embeddings only), None)``;
- ``shuffled_labels``: each sequence's labels are another, unrelated random sequence.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from _common import SEEDS, explicit, marked, plain_check

FAULTS = ["healthy", "lr_x100", "param_left_out", "shuffled_labels"]
VOCAB, LENGTH = 32, 12
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class Counting(torch.utils.data.Dataset):  # type: ignore[misc]
    def __init__(self, seed: int, shuffled: bool, n: int = 128) -> None:
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, VOCAB, (n, 1), generator=g)
        self.ids = (start + torch.arange(LENGTH)) % VOCAB
        self.labels = (torch.randint(0, VOCAB, (n, LENGTH), generator=g) if shuffled
                       else self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


@marked
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fault", FAULTS)
def test_hf_trainer(fault: str, seed: int, tmp_path: Path,
                    request: pytest.FixtureRequest) -> None:
    lt = explicit(request)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=1, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=LENGTH))
    lr = 0.5 if fault == "lr_x100" else 5e-3
    optimizers: Any = (None, None)
    if fault == "param_left_out":
        optimizers = (torch.optim.AdamW(model.transformer.wte.parameters(), lr=lr), None)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=30, learning_rate=lr, per_device_train_batch_size=8,
        logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
        seed=seed, lr_scheduler_type="constant", warmup_steps=0)
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=Counting(seed, fault == "shuffled_labels"),
        optimizers=optimizers, callbacks=[lt.hf_callback()] if lt is not None else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    plain_check([e["loss"] for e in trainer.state.log_history if "loss" in e])
