"""TOsCallback for PyTorch Lightning (skipped when Lightning is not installed)."""

import pytest
import torch
import torch.nn as nn

L = pytest.importorskip("lightning.pytorch")

import torch_tos  # noqa: E402
from torch_tos.integrations.lightning import TOsCallback  # noqa: E402
from conftest import ffn  # noqa: E402


class Net(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = ffn()

    def training_step(self, batch, batch_idx):  # calls a submodule, not self(): no root forward
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Recorder(L.loggers.Logger):
    def __init__(self):
        super().__init__()
        self.logged = []

    name = "recorder"
    version = 0

    def log_metrics(self, metrics, step=None):
        self.logged.append((dict(metrics), step))

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def _data(n=4, batch=8):
    g = torch.Generator().manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.randn(n * batch, 4, generator=g), torch.rand(n * batch, 1, generator=g))
    return torch.utils.data.DataLoader(ds, batch_size=batch)


def test_lightning_callback_counts_and_logs():
    torch.manual_seed(0)
    module, logger, cb = Net(), Recorder(), TOsCallback()
    before = {k: dict(v) for k, v in ((m, m._forward_pre_hooks) for m in module.modules())}
    trainer = L.Trainer(max_epochs=1, limit_val_batches=2, num_sanity_val_steps=0, logger=logger,
                        callbacks=[cb], accelerator="cpu", devices=1, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    x, y = next(iter(_data()))
    expected = torch_tos.profile(module.net, x, mode="training", loss_fn=nn.MSELoss(), target=y,
                                 optimizer=torch.optim.SGD(module.net.parameters(), lr=0.1))
    trainer.fit(module, _data(), _data())
    steps = cb.counter.steps
    assert [r.kind for r in steps] == ["training"] * 4 + ["validation"] * 2
    assert [r.cache for r in steps[:4]] == ["miss", "hit", "hit", "hit"]
    # every layer and the optimizer exactly as profile() counts the plain network; the (loss) layer
    # also has Lightning's own work (it divides the loss by the accumulation factor, and back)
    ours = {(k[0].replace("net.", "", 1),) + k[1:]: v for k, v in cb.counter.report(step=0).counts.rows.items()
            if k[0] != "(loss)"}
    theirs = {k: v for k, v in expected.counts.rows.items() if k[0] != "(loss)" and not k[3].startswith("profiler.")}
    assert ours == theirs
    assert steps[0].phases["forward"] == expected.by_phase()["forward"]
    assert steps[0].phases["optimizer"] == expected.by_phase()["optimizer"]
    tos_steps = [(m["tos/step"], s) for m, s in logger.logged if "tos/step" in m]
    assert [s for _, s in tos_steps] == [1, 2, 3, 4]
    assert tos_steps[0][0] == pytest.approx(steps[0].tos)
    assert any("tos/validation_step" in m for m, _ in logger.logged)
    # everything removed after fit
    assert {k: dict(v) for k, v in ((m, m._forward_pre_hooks) for m in module.modules())} == before
    assert not torch_tos.training._ACTIVE
