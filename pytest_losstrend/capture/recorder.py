"""The recording core of the ``losstrend`` fixture: loss series recorded step by step, judged,
stopped early on divergence, and the model watched for diagnosis.

:class:`Recorder` is everything the fixture's object does but ``fit`` (the catalogue's training
loop, :class:`pytest_losstrend.catalogue.fit.FitRecorder`), so that the lower layers (the Keras
callback, the catalogue's scenarios and mutants) record into it without importing the pytest
glue. ``pytest_losstrend.fixture.LossTrend`` is built on it. Imported only when a test asks for
the fixture, so a suite that never uses it pays nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pytest_losstrend.diagnosis.evidence import Evidence
from pytest_losstrend.diagnosis.messages import failure_message
from pytest_losstrend.verdict.criteria import BOUND_POINTS, DIVERGENCE_BOUND, Criteria
from pytest_losstrend.verdict.result import Verdict

if TYPE_CHECKING:
    from pytest_losstrend.verdict.judgment import Judgment
    from pytest_losstrend.verdict.reference import Reference
    from pytest_losstrend.verdict.stats import FloatArray

# Device tensors (CUDA, MPS) are kept as tensors and copied to the host in chunks of this many,
# so recording never forces a device sync per step.
DEVICE_CHUNK = 64


def eval_series_for(series: str) -> str:
    """Where the validation loss of a training series goes: ``"eval"`` for ``"train"``."""
    return "eval" if series == "train" else f"{series}_eval"


class LossTrendStop(Exception):
    """Raised by ``record`` to stop a marked test whose loss went non-finite or diverged.

    The plugin turns it into the test's failure, carrying the verdict, so the remaining steps
    are not paid for. It derives from :class:`Exception` on purpose: it travels through the
    user's training loop like any error would.
    """

    def __init__(self, message: str, verdict: Verdict, series: str) -> None:
        super().__init__(message)
        self.verdict = verdict
        self.series = series


class _Series:
    __slots__ = ("arming", "bound", "name", "pending", "values")

    def __init__(self, name: str) -> None:
        self.name = name
        self.values: list[float] = []
        self.pending: list[Any] = []
        self.bound = math.inf
        # True until the divergence bound is set from the first positive value.
        self.arming = True

    def arm(self, v: float) -> None:
        if v > 0 and math.isfinite(v):
            self.bound = v * DIVERGENCE_BOUND
            self.arming = False
        elif len(self.values) >= BOUND_POINTS:
            self.arming = False

    def flush(self) -> None:
        if not self.pending:
            return
        from pytest_losstrend.capture.convert import tensors_to_floats

        pending, self.pending = self.pending, []
        self.values.extend(tensors_to_floats(pending))


Converter = Callable[[Any], Any]

#: Who derived a series' reference level, weakest first: ``watch``'s batch (set only when
#: nothing else did), ``fit``'s data, the test's own ``set_reference``. A stronger one replaces
#: a weaker one, even with "unknown".
BY_WATCH, BY_FIT, BY_TEST = 1, 2, 3


class _ReferenceEntry:
    """A series' reference level (None: the loss gives none), who derived it and from what.

    ``pending`` holds a Keras model watched before it was compiled, or without ``loss_fn``:
    its compiled loss is read when the reference is first asked for."""

    __slots__ = ("by", "pending", "reference", "source")

    def __init__(self, by: int, reference: Reference | None, source: str,
                 pending: tuple[Any, Any] | None = None) -> None:
        self.by = by
        self.reference = reference
        self.source = source
        self.pending = pending

    def resolve(self) -> Reference | None:
        if self.pending is not None:
            model, targets = self.pending
            loss = getattr(model, "loss", None)
            if loss is not None:
                from pytest_losstrend.capture.references import reference_for

                self.reference = reference_for(loss, targets)
                self.pending = None
        return self.reference


class Recorder:
    """Records loss series and judges them: the fixture's object without ``fit``.

    Users meet it as :class:`pytest_losstrend.LossTrend`, through the ``losstrend`` fixture;
    the catalogue's scenarios record into a bare one.
    """

    def __init__(
        self,
        criteria: Criteria | None = None,
        *,
        fail_fast: bool = False,
        seed: int | None = None,
        base_seed: int | None = None,
        nodeid: str = "",
        marker: str = "loss_decreases",
    ) -> None:
        self.criteria = criteria or Criteria()
        self.fail_fast = fail_fast
        #: The seed this test ran under: ``base_seed`` plus the ``seeds=N`` index.
        self.seed = seed
        self.base_seed = seed if base_seed is None else base_seed
        self.nodeid = nodeid
        self.marker = marker
        self._series: dict[str, _Series] = {}
        self._converters: dict[type, Converter] = {}
        self.stopped: LossTrendStop | None = None
        #: "torch", "tensorflow" or "keras" once a value from that framework was recorded.
        self.framework: str | None = None
        #: What ``watch`` saw (None when nothing is watched).
        self.evidence: Evidence | None = None
        self._watchers: list[Any] = []
        self._references: dict[str, _ReferenceEntry] = {}

    # -- recording ---------------------------------------------------------------------------

    def record(self, value: Any, *, series: str = "train") -> None:
        """Append one loss (or each element of a sequence) to the named series.

        Takes a float, a numpy scalar or 1-d array, a list, a torch or tensorflow tensor
        (scalar or 1-d), or a Keras ``History`` (its ``loss``, and ``val_loss`` as ``"eval"``;
        recorded under another series name ``"x"``, the validation loss goes to ``"x_eval"``).
        A torch tensor is detached, so the autograd graph is not kept alive; a tensor on an
        accelerator is copied to the host in chunks, never synchronised per step.

        Under the ``loss_decreases`` marker, a non-finite loss or one past the divergence bound
        stops the test at that step with the verdict.

        Example:
            >>> losstrend.record(loss)                      # once per optimizer step
            >>> losstrend.record(val_loss, series="eval")   # once per epoch
        """
        s = self._series.get(series)
        if s is None:
            if not isinstance(series, str) or not series:
                raise TypeError(f"series must be a non-empty string, got {series!r}")
            s = self._series[series] = _Series(series)
        tp = type(value)
        if tp is float or tp is int:
            try:
                v = float(value)
            except OverflowError as exc:  # an int past 1.8e308
                from pytest_losstrend.capture.convert import not_a_float

                raise not_a_float(value, exc) from None
        else:
            conv = self._converters.get(tp)
            if conv is None:
                from pytest_losstrend.capture.convert import converter_for

                conv = self._converters[tp] = converter_for(value)
                root = (tp.__module__ or "").split(".")[0]
                if root in ("torch", "tensorflow", "keras") and self.framework is None:
                    self.framework = root
            out = conv(value)
            if out.__class__ is not float:
                self._record_other(s, value, out)
                return
            v = out
        if s.pending:
            s.flush()
        s.values.append(v)
        # ``v - v`` is NaN, hence truthy, exactly when v is NaN or infinite: one subtraction
        # instead of a call on the per-step path.
        if v > s.bound or v - v:
            if self.fail_fast:
                self._stop(s)
        elif s.arming:
            s.arm(v)

    def record_floats(self, values: list[float], *, series: str = "train") -> None:
        """:meth:`record` each of ``values``, plain Python floats, in order: one call for the
        lot while none is non-finite or past the divergence bound (automatic capture hands its
        losses over this way, a batch at a time).

        Example:
            >>> recorder.record_floats([2.31, 2.29, 2.30])
        """
        s = self._series.get(series)
        if s is not None and values and not s.pending and not s.arming:
            total = sum(values)
            # ``total - total`` is NaN, hence truthy, when a value is NaN or infinite.
            if not (max(values) > s.bound or total - total):
                s.values.extend(values)
                return
        for v in values:
            self.record(v, series=series)

    def _record_other(self, s: _Series, value: Any, out: Any) -> None:
        from pytest_losstrend.capture.convert import DEFER, HISTORY

        if out is DEFER:
            s.pending.append(value.detach())
            if len(s.pending) >= DEVICE_CHUNK:
                s.flush()
                self._check_last(s, DEVICE_CHUNK)
        elif out is HISTORY:
            self._record_history(value, s.name)
        else:
            s.flush()
            s.values.extend(out)
            self._check_last(s, len(out))

    def _check_last(self, s: _Series, k: int) -> None:
        if k <= 0:
            return
        for v in s.values[:BOUND_POINTS]:
            if not s.arming:
                break
            s.arm(v)
        if not self.fail_fast:
            return
        for v in s.values[-k:]:
            if not math.isfinite(v) or v > s.bound:
                self._stop(s)

    def _stop(self, s: _Series) -> None:
        __tracebackhide__ = True  # the stop is the verdict, not a bug in this frame
        verdict = self.check(series=s.name)
        losses = s.values
        crit = self.criteria.merged(series=s.name)
        msg = failure_message(verdict, losses, crit, header=self.marker, seed=self.seed_line(),
                              **self.reference_note(crit))
        msg += f"\n  stopped:  at step {len(losses) - 1}, the remaining steps were skipped"
        self.stopped = LossTrendStop(msg, verdict, s.name)
        raise self.stopped

    def _record_history(self, history: Any, series: str) -> None:
        hist = history.history
        if "loss" not in hist:
            raise ValueError("the Keras History has no 'loss' entry to record")
        self.record(list(hist["loss"]), series=series)
        if "val_loss" in hist:
            self.record(list(hist["val_loss"]), series=eval_series_for(series))

    # -- access --------------------------------------------------------------------------

    @property
    def series_names(self) -> list[str]:
        """Names of the series recorded so far, in the order first recorded."""
        return list(self._series)

    def losses(self, series: str = "train") -> list[float]:
        """The recorded values of ``series`` as floats (empty when nothing was recorded).

        Example:
            >>> losstrend.losses("eval")[-1]
            0.412
        """
        s = self._series.get(series)
        if s is None:
            return []
        s.flush()
        return list(s.values)

    def as_dict(self) -> dict[str, list[float]]:
        """Every series as plain lists of floats."""
        return {name: self.losses(name) for name in self._series}

    def array(self, series: str = "train") -> FloatArray:
        """The recorded values of ``series`` as a float64 numpy array."""
        import numpy as np

        return np.asarray(self.losses(series), dtype=np.float64)

    # -- judging ----------------------------------------------------------------------------

    def check(self, **criteria: Any) -> Verdict:
        """Judge a recorded series; criteria default to the marker's (or the defaults).

        Example:
            >>> verdict = losstrend.check(min_drop=0.3)
            >>> verdict.ok, verdict.reason
        """
        from pytest_losstrend.verdict.trend import judge

        crit = self.criteria.merged(**criteria) if criteria else self.criteria
        if crit.series not in self._series:
            return self.empty_verdict(crit.series)
        # The other series are judged only when a failure is to be diagnosed against them.
        verdict = judge(self.array(crit.series), crit, self.resolved_reference(crit))
        if verdict.ok:
            return verdict
        return self.diagnosed(self.judgment(crit, verdict=verdict))

    def judgment(self, criteria: Criteria | None = None, *,
                 verdict: Verdict | None = None) -> Judgment:
        """Every recorded series judged once: the one ``criteria`` names under them (or
        ``verdict``, when the caller has it: a stopped run's), the others under the defaults,
        each against its reference level (:attr:`references`) as its criterion ``reference``
        says.

        Example:
            >>> losstrend.judgment().verdicts["eval"].kind
            'decrease'
        """
        from pytest_losstrend.verdict.judgment import judge_series

        return judge_series(self.as_dict(), criteria or self.criteria, verdict=verdict,
                            references=self.references)

    def diagnosed(self, judgment: Judgment) -> Verdict:
        """The judged series' verdict, with the built-in diagnoses when it did not pass (the
        empty verdict when nothing was recorded under its name).

        Example:
            >>> losstrend.diagnosed(losstrend.judgment()).diagnoses[0].cause
            'lr_too_high'
        """
        if judgment.judged not in judgment.series:
            return self.empty_verdict(judgment.judged)
        verdict = judgment.series[judgment.judged].verdict
        if verdict.ok:
            return verdict
        from pytest_losstrend.diagnosis.context import context_for
        from pytest_losstrend.diagnosis.ranking import with_diagnoses
        from pytest_losstrend.diagnosis.rules import builtin_diagnoses

        ctx = context_for(judgment.losses, judgment.judged, verdict, evidence=self.evidence,
                          judgment=judgment)
        return with_diagnoses(verdict, builtin_diagnoses(ctx))

    def empty_verdict(self, series: str) -> Verdict:
        """The failing verdict of a series nothing was recorded under, saying so."""
        return Verdict("fail", self._nothing_recorded(series), "empty", {"n": 0})

    def assert_decreases(self, **criteria: Any) -> Verdict:
        """Judge a series and raise ``AssertionError`` with the full message unless it passes.

        An inconclusive verdict follows the ``inconclusive`` criterion: ``"fail"`` raises,
        ``"skip"`` skips the test, ``"pass"`` returns.

        Example:
            >>> losstrend.assert_decreases(series="eval", min_drop=0.2)
        """
        __tracebackhide__ = True
        crit = self.criteria.merged(**criteria) if criteria else self.criteria
        verdict = self.check(**criteria)
        if verdict.ok:
            return verdict
        if verdict.inconclusive and crit.inconclusive != "fail":
            if crit.inconclusive == "skip":
                import pytest

                pytest.skip(verdict.reason)
            return verdict
        raise AssertionError(
            failure_message(verdict, self.losses(crit.series), crit,
                            header="assert_decreases", seed=self.seed_line(),
                            **self.reference_note(crit))
        )

    def seed_line(self) -> str | None:
        """How to rerun this test under the same seed, for failure messages."""
        if self.seed is None:
            return None
        where = f"pytest '{self.nodeid}' " if self.nodeid else "pytest "
        return f"{self.seed} (rerun: {where}--losstrend-seed={self.base_seed})"

    def _nothing_recorded(self, series: str) -> str:
        have = ", ".join(map(repr, self._series)) or "none"
        return (
            f"no loss was recorded in series {series!r} (series recorded: {have}); call "
            "losstrend.record(loss) once per optimizer step, or pass "
            "losstrend.keras_callback() to model.fit"
        )

    # -- reference levels --------------------------------------------------------------------

    def set_reference(self, loss: Any, targets: Any, *, series: str = "train") -> Reference | None:
        """Tell the verdict which loss and targets ``series`` is trained on, so that it knows
        the series' reference level: the loss of the best constant predictor (the entropy of
        the label frequencies, the variance of the targets...). A run that does not end 10%
        below it learned nothing from its inputs and fails as ``chance_level`` (the criterion
        ``reference``: ``"auto"`` by default, None turns it off, a number sets it).

        ``loss`` is the loss the series records: a torch loss module or functional, a Keras
        loss object or function, or a name (``"mse"``, ``"cross_entropy"``...); ``targets``
        the targets it is computed on (numpy, torch or TensorFlow), all of them or a fair
        sample. ``fit`` and ``watch(model, opt, loss_fn=, batch=(x, y))`` do this by
        themselves; this call replaces what they derived.

        Returns the reference level, or None (and the series has none) when the loss is not
        one it knows or its settings change its units (a custom loss, ``reduction="sum"``,
        ``label_smoothing``, a class ``weight``, ``pos_weight``): never a wrong level, and no
        warning. A ``series`` that is not a non-empty string is a ``TypeError``.

        Example:
            >>> ref = losstrend.set_reference(torch.nn.CrossEntropyLoss(), y_train)
            >>> ref.value, ref.how      # 10 balanced classes
            (2.302585092994046, 'the entropy of the label frequencies (ln 10 = 2.303: ...)')
            >>> losstrend.set_reference("mse", y_val, series="eval").how
            'the variance of the targets (0.9821: predicting their mean)'
        """
        if not isinstance(series, str) or not series:
            raise TypeError(f"set_reference(): series must be a non-empty string, got "
                            f"{series!r}")
        return self.offer_reference(series, loss, targets, by=BY_TEST,
                                    where="given to set_reference()")

    def offer_reference(self, series: str, loss: Any, targets: Any, *, by: int, where: str,
                        model: Any = None) -> Reference | None:
        """Derive ``series``' reference level from ``loss`` and ``targets`` unless a stronger
        source set it already (``by``: :data:`BY_WATCH`, :data:`BY_FIT`, :data:`BY_TEST`);
        ``where`` completes "the N targets ..." in the report. With ``loss=None`` and a Keras
        ``model``, its compiled loss is read when the reference is first needed. Returns the
        series' reference level after the offer."""
        old = self._references.get(series)
        if old is not None and (old.by > by or (by == BY_WATCH and old.by == BY_WATCH)):
            return old.resolve()
        from pytest_losstrend.capture.references import reference_for, targets_to_numpy

        try:
            if targets is None:
                raise ValueError("no targets")
            y = targets_to_numpy(targets)
        except (TypeError, ValueError, RuntimeError, NotImplementedError):
            self._references[series] = _ReferenceEntry(by, None, "")
            return None
        rows = int(y.shape[0]) if y.ndim else 1
        source = f"the {rows} {'target' if rows == 1 else 'targets'} {where}"
        if loss is None and model is not None:
            entry = _ReferenceEntry(by, None, source, pending=(model, y))
        else:
            entry = _ReferenceEntry(by, reference_for(loss, y), source)
        self._references[series] = entry
        return entry.resolve()

    @property
    def references(self) -> dict[str, Reference]:
        """The reference level of each series that has one, as derived from its loss and
        targets (by ``fit``, ``watch(loss_fn=, batch=)`` or :meth:`set_reference`).

        Example:
            >>> losstrend.references["train"].value
            2.302585092994046
        """
        out = {}
        for name, entry in self._references.items():
            ref = entry.resolve()
            if ref is not None:
                out[name] = ref
        return out

    def reference_source(self, series: str, reference: Reference | None) -> str | None:
        """What ``reference`` was derived from ("the 256 targets of the batch given to
        watch()"), when it is ``series``' own derived level; None otherwise (a number the
        criterion set, or no reference)."""
        entry = self._references.get(series)
        if reference is None or entry is None or entry.resolve() is not reference:
            return None
        return entry.source or None

    def resolved_reference(self, crit: Criteria) -> Reference | None:
        """The reference level the judged series of ``crit`` is held to: its criterion
        ``reference`` applied to the level derived for it."""
        from pytest_losstrend.verdict.reference import resolve_reference

        return resolve_reference(crit.reference, self.references.get(crit.series))

    def reference_note(self, crit: Criteria) -> dict[str, Any]:
        """The reference and its source as :func:`failure_message` takes them."""
        ref = self.resolved_reference(crit)
        return {"reference": ref, "reference_source": self.reference_source(crit.series, ref)}

    # -- watching -------------------------------------------------------------------------

    def watch(
        self,
        model: Any,
        optimizer: Any = None,
        *,
        loss_fn: Any = None,
        batch: Any = None,
    ) -> Any:
        """Let diagnosis see the model train: gradients, updates, learning rates, inputs.

        Takes a torch ``nn.Module`` (with its optimizer, to see the learning rate and which
        parameters it holds) or a Keras model. Optional: everything works on the loss series
        alone, diagnosis just gets sharper. With ``loss_fn`` and a fixed ``batch=(x, y)``, a
        failing verdict also measures the sharpness (the top Hessian eigenvalue) and compares
        it with the learning rate's stability limit 2/lr, and the ``"train"`` series gets the
        reference level of that loss on ``y`` (unless ``fit``, :meth:`set_reference` or an
        earlier ``watch`` set one): a run that ends no better than the best constant predictor
        fails as ``chance_level``. A Keras model's compiled loss stands in for ``loss_fn``.
        Returns ``model``.

        Example:
            >>> model = losstrend.watch(torch.nn.Linear(3, 1), optimizer)
            >>> model = losstrend.watch(net, opt, loss_fn=torch.nn.CrossEntropyLoss(),
            ...                         batch=(x[:256], y[:256]))
            >>> model = losstrend.watch(keras_model)   # keras_callback() watches by itself
        """
        watcher = _make_watcher(model, optimizer, loss_fn=loss_fn, batch=batch)
        pair = isinstance(batch, (tuple, list)) and len(batch) == 2
        if pair and (loss_fn is not None or watcher.evidence.framework == "keras"):
            self.offer_reference("train", loss_fn, batch[1], by=BY_WATCH,
                                 where="of the batch given to watch()",
                                 model=model if loss_fn is None else None)
        self.add_watcher(watcher)
        return model

    def add_watcher(self, watcher: Any) -> None:
        """Keep a watcher built elsewhere (automatic capture builds its own): its evidence
        becomes the run's, and :meth:`finish_watching` finishes it.

        Example:
            >>> recorder.add_watcher(TorchWatcher(model, probe_at_backward=True))
        """
        self._watchers.append(watcher)
        self.evidence = watcher.evidence
        if self.framework is None:
            self.framework = watcher.evidence.framework

    def adopt(self, staging: Recorder) -> bool:
        """Take what automatic capture recorded into ``staging`` as this recorder's own: its
        series, reference levels, watchers and evidence, its framework and its stop. Done only
        when this recorder recorded nothing itself (a test that calls ``record`` keeps full
        control); otherwise ``staging``'s watchers are finished and its series dropped.
        Returns whether the captured series were taken.

        Example:
            >>> losstrend.adopt(staging)   # after automatic capture stopped
            True
        """
        if self._series:
            staging.finish_watching()
            return False
        self._series = staging._series
        for name, entry in staging._references.items():
            self._references.setdefault(name, entry)
        if self.evidence is None:
            self.evidence = staging.evidence
        self._watchers.extend(staging._watchers)
        if self.framework is None:
            self.framework = staging.framework
        if self.stopped is None:
            self.stopped = staging.stopped
        return bool(self._series)

    def finish_watching(self) -> None:
        """Stop watching: remove hooks and complete the evidence (idempotent)."""
        for w in self._watchers:
            w.finish()

    def measure_sharpness(self) -> float | None:
        """The top Hessian eigenvalue on the watched batch, measured now (a failing verdict
        calls this once; it costs a few dozen Hessian-vector products)."""
        for w in reversed(self._watchers):
            value = w.sharpness()
            if value is not None:
                w.evidence.sharpness = value
                return float(value)
        return None

    # -- framework helpers --------------------------------------------------------------------

    def keras_callback(self, *, loss_key: str = "loss") -> Any:
        """A Keras callback that records each batch's own loss, and ``val_loss`` as ``"eval"``.

        Keras 3 logs the epoch's running mean in ``on_train_batch_end``; the callback reads the
        loss tracker's running sums and differences them, so the series holds each batch's own
        loss (weighted as Keras weights it, by batch size).

        ``loss_key`` names the loss in the training logs, for a custom ``train_step`` that
        returns it under another name (``{"total_loss": ..., "kl": ...}``); ``"val_"`` plus it
        is recorded as ``"eval"`` when present. A value the step returns as it is recorded as
        it is; one from a ``keras.metrics.Mean`` (a running mean) is undone like the built-in
        loss. Logs without the key stop the fit with an error naming the keys they hold.

        Example:
            >>> model.fit(x, y, epochs=5, callbacks=[losstrend.keras_callback()], verbose=0)
            >>> vae.fit(x, epochs=5, callbacks=[losstrend.keras_callback(loss_key="total_loss")])
        """
        from pytest_losstrend.capture.keras import check_loss_key, make_callback

        # Checked before anything else, so a wrong key fails here, not inside model.fit.
        check_loss_key(loss_key)
        self.framework = "keras"
        return make_callback(self, loss_key=loss_key)

    def lightning_callback(self, *, eval_key: str = "val_loss", watch: bool = True) -> Any:
        """A Lightning 2.x callback recording each optimizer step's own loss, and the logged
        ``eval_key`` (``self.log("val_loss", ...)``) as ``"eval"`` after each validation run.

        Lightning passes ``on_train_batch_end`` the loss divided by
        ``accumulate_grad_batches``; the callback multiplies it back and records one point
        per optimizer step, the mean of its batches. It watches the module for diagnosis
        (``watch=False`` turns that off), reading the gradients in ``on_before_optimizer_step``
        (unscaled there under AMP). Under the marker, a non-finite or diverging loss sets
        ``trainer.should_stop`` and the test fails with the verdict once ``fit`` ends.
        Works with ``lightning.pytorch`` and ``pytorch_lightning``.

        Example:
            >>> trainer = lightning.pytorch.Trainer(max_epochs=3, logger=False,
            ...                                     callbacks=[losstrend.lightning_callback()])
            >>> trainer.fit(module, train_loader, val_loader)
        """
        from pytest_losstrend.capture.lightning import make_lightning_callback

        if not isinstance(eval_key, str) or not eval_key:
            raise TypeError(f"lightning_callback(eval_key=...) takes the name a validation "
                            f"loss is logged under, such as 'val_loss'; got {eval_key!r:.80}")
        return make_lightning_callback(self, eval_key=eval_key, watch=watch)

    def hf_callback(self, *, watch: bool = True) -> Any:
        """A Hugging Face ``TrainerCallback`` recording each optimizer step's loss from the
        Trainer's logs, and ``eval_loss`` as ``"eval"``.

        The Trainer logs the mean loss of every ``logging_steps`` steps: anything but
        ``logging_steps=1`` would hide steps, so it is an error at the start of ``train()``
        naming the setting. ``logging_nan_inf_filter=True`` (the default) hides a NaN step
        loss from the logs; set it to False to let the check see one. The model is watched for
        diagnosis (``watch=False`` turns that off). Under the marker, a non-finite or diverging
        loss sets ``control.should_training_stop`` and the test fails with the verdict once
        ``train()`` ends.

        Example:
            >>> args = TrainingArguments(tmp_path, logging_steps=1, max_steps=40, report_to=[])
            >>> Trainer(model, args, train_dataset=ds,
            ...         callbacks=[losstrend.hf_callback()]).train()
        """
        from pytest_losstrend.capture.hf import make_hf_callback

        return make_hf_callback(self, watch=watch)

    def record_file(self, path: Any, *, series: str | None = None) -> dict[str, list[float]]:
        """Record the loss series of a finished run's log, to judge them like recorded ones.

        Reads a Hugging Face ``trainer_state.json`` (``log_history``: ``loss`` as ``"train"``,
        ``eval_loss`` as ``"eval"``; or the checkpoint directory holding it), a CSV with a
        header (Keras' ``CSVLogger``: ``loss``, ``val_loss``; Lightning's ``metrics.csv``),
        JSONL (one object per line with a loss key) or TensorBoard event files (a file or
        its directory; needs the ``tensorboard`` package). With ``series="x"``, the training
        loss is recorded as ``"x"`` and the validation loss as ``"x_eval"``. Returns what it
        recorded, by series name. A file it cannot parse raises
        :class:`~pytest_losstrend.capture.logfiles.LogFileError` (a ``ValueError``) naming the
        file and the line. Nothing is unpickled.

        Example:
            >>> losstrend.record_file("runs/nightly/checkpoint-500/trainer_state.json")
            {'train': [2.31, 2.2, ...], 'eval': [2.1, 1.9, ...]}
        """
        from pytest_losstrend.capture.logfiles import read_log

        if series is not None and (not isinstance(series, str) or not series):
            raise TypeError(f"record_file(series=...) must be a non-empty string or None, "
                            f"got {series!r:.80}")
        found = read_log(path)
        out: dict[str, list[float]] = {}
        for name, values in found.items():
            target = name
            if series is not None:
                target = series if name == "train" else eval_series_for(series)
            out[target] = values
        for target, values in out.items():
            self.record(values, series=target)
        return out

    @property
    def watchers(self) -> list[Any]:
        """The watchers ``watch`` made, oldest first (the list itself, not a copy)."""
        return self._watchers


def _make_watcher(model: Any, optimizer: Any, *, loss_fn: Any, batch: Any) -> Any:
    module = type(model).__module__ or ""
    mro = {c.__module__.split(".")[0] for c in type(model).__mro__}
    if "torch" in mro and hasattr(model, "named_parameters"):
        from pytest_losstrend.capture.torch_watch import TorchWatcher

        return TorchWatcher(model, optimizer, loss_fn=loss_fn, batch=batch)
    if "keras" in mro or module.startswith(("keras", "tensorflow")):
        from pytest_losstrend.capture.keras_watch import KerasWatcher

        return KerasWatcher(model, optimizer, loss_fn=loss_fn, batch=batch)
    raise TypeError(
        f"watch() takes a torch nn.Module or a Keras model, got {type(model).__name__}"
    )
