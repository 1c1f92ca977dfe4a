"""PyTorch Lightning: TOs, FLOPs and energy of every step, logged through the trainer's loggers.

::

    import lightning as L
    from torch_tos.integrations.lightning import TOsCallback

    tos = TOsCallback()                       # dtype=, meter=, cache= as for TOsCounter
    L.Trainer(callbacks=[tos]).fit(module, data)
    print(tos.counter.total, tos.counter.report())

The callback wraps the ``LightningModule`` in a :class:`torch_tos.TOsCounter` from ``setup`` to
``teardown`` (also on an exception). A ``training_step`` does not have to call the module's own
``forward``: each batch opens its step explicitly (``on_*_batch_start`` → ``counter.begin_step(batch)``,
so the cache signature is the batch's), and a training step closes when the optimizer steps
(Lightning's closure runs inside ``optimizer.step()``; the counter books its forward, loss and
backward under their own phases). With ``accumulate_grad_batches`` the batches up to the optimizer
step are one step. Validation / test / predict batches are their own ``validation`` or
``inference`` steps, closed at ``on_*_batch_end``; a validation run that starts while gradients are
being accumulated closes the partial training step first (totals are unaffected).

Logged at each training batch end, for every step closed since the previous log (``step`` =
``trainer.global_step``): ``tos/step``, ``tos/total``, ``flops/step`` and, with a meter,
``energy/joules`` and ``energy/joules_per_tos`` — the scalars :meth:`TOsCounter.log_to` writes.
Evaluation steps are logged under ``tos/<kind>_step``, ``flops/<kind>_step`` and
``energy/<kind>_joules`` so that they do not mix into the training curves. Under a distributed
strategy, :attr:`TOsCallback.total_all_ranks` holds the totals over all ranks after training.

Lightning is imported when this module is imported: ``lightning.pytorch`` if installed, else
``pytorch_lightning``.
"""

from __future__ import annotations

try:  # the unified package first, then the standalone one
    from lightning.pytorch.callbacks import Callback
except ImportError:  # pragma: no cover - depends on what is installed
    try:
        from pytorch_lightning.callbacks import Callback
    except ImportError as e:
        raise ImportError("torch_tos.integrations.lightning needs PyTorch Lightning: "
                          "pip install lightning (or pytorch-lightning)") from e

from ..training import StepRecord, TOsCounter

__all__ = ["TOsCallback"]


class TOsCallback(Callback):
    """Count and log the TOs of every step of a Lightning ``Trainer`` run (see the module doc).

    ``dtype``, ``meter``, ``cache``, ``table``: as for :class:`torch_tos.TOsCounter`.
    ``log``: send the scalars to ``trainer.loggers`` (default True). After (or during) a run,
    :attr:`counter` holds the steps, totals and :meth:`~torch_tos.TOsCounter.report`.
    """

    def __init__(self, *, dtype=None, meter=None, cache: bool = True, table=None, log: bool = True):
        super().__init__()
        self._options = dict(dtype=dtype, meter=meter, cache=cache, table=table)
        self.log = log
        self.counter: TOsCounter | None = None
        self.total_all_ranks = None
        self._active = False
        self._logged = 0
        self._running_tos = 0.0

    # -- lifetime --------------------------------------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        if self._active:
            return
        if self.counter is None or self.counter.model is not pl_module:
            self.counter = TOsCounter(pl_module, None, **self._options)
            self._logged, self._running_tos = 0, 0.0
        self.counter.__enter__()
        self._active = True

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._stop(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._stop(trainer, exception)

    def _stop(self, trainer, exception: BaseException | None = None) -> None:
        if not self._active:
            return
        self._active = False
        if exception is None:
            self.counter.__exit__(None, None, None)
            self._log_new(trainer)
        else:
            self.counter.__exit__(type(exception), exception, exception.__traceback__)

    # -- training --------------------------------------------------------------------------------
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._active:
            self.counter.begin_step(batch)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._log_new(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        import torch.distributed as dist

        if self._active and dist.is_available() and dist.is_initialized():
            self.total_all_ranks = self.counter.total_all_ranks()  # every rank reaches this hook

    # -- evaluation: one step per batch ----------------------------------------------------------
    def _eval_start(self, batch) -> None:
        if self._active:
            self.counter.begin_step(batch)

    def _eval_end(self, trainer) -> None:
        if self._active:
            self.counter.step()
            self._log_new(trainer)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._eval_start(batch)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        self._eval_end(trainer)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._eval_start(batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._eval_end(trainer)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._eval_start(batch)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._eval_end(trainer)

    # -- logging ---------------------------------------------------------------------------------
    @staticmethod
    def metrics(rec: StepRecord, running_tos: float) -> dict:
        """The scalars logged for one step record."""
        if rec.kind == "training":
            out = {"tos/step": rec.tos, "tos/total": running_tos, "flops/step": float(rec.flops)}
            if rec.joules is not None:
                out["energy/joules"] = rec.joules
                if rec.joules_per_tos is not None:
                    out["energy/joules_per_tos"] = rec.joules_per_tos
            return out
        out = {f"tos/{rec.kind}_step": rec.tos, "tos/total": running_tos,
               f"flops/{rec.kind}_step": float(rec.flops)}
        if rec.joules is not None:
            out[f"energy/{rec.kind}_joules"] = rec.joules
        return out

    def _log_new(self, trainer) -> None:
        if self.counter is None:
            return
        new = self.counter.steps[self._logged:]
        self._logged = len(self.counter.steps)
        for rec in new:
            self._running_tos += rec.tos
            if not self.log:
                continue
            metrics = self.metrics(rec, self._running_tos)
            for logger in getattr(trainer, "loggers", None) or ():
                logger.log_metrics(metrics, step=trainer.global_step)

    # -- checkpointing: the counter's results are not part of a checkpoint -------------------------
    def state_dict(self) -> dict:
        return {}
