"""TOsTrainerCallback: a tiny Trainer run on CPU logs the TOs of each step through the Trainer."""

import pytest
import torch

import torch_tos

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from transformers import Trainer, TrainerCallback, TrainingArguments  # noqa: E402

from torch_tos.integrations.transformers import TOsTrainerCallback, build_from_config, hf_loss  # noqa: E402

CONFIG = dict(num_hidden_layers=1, hidden_size=16, intermediate_size=32, num_attention_heads=2,
              num_key_value_heads=1, vocab_size=50, use_cache=False)


class _Meter:
    """A meter with fixed joules per window (the callback only forwards what a meter says)."""

    def measure(self):
        class Window:
            def __enter__(self_inner):
                self_inner.joules, self_inner.seconds, self_inner.estimated = 2.0, 0.5, True
                return self_inner

            def __exit__(self_inner, *exc):
                return False

        return Window()


class _Reporter(TrainerCallback):
    """Stands for a reporting integration (TensorBoard, W&B): records what on_log receives."""

    def __init__(self):
        self.logged = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logged.append(dict(logs))


def test_tiny_trainer_logs_tos_flops_and_joules_per_step(tmp_path):
    model, make_inputs = build_from_config("llama", CONFIG, "cpu")
    batch = make_inputs(batch_size=2, seq_len=6)
    data = [{k: v[i] for k, v in batch.items()} for i in range(2)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # the step the Trainer runs: forward with labels (loss inside the model), backward, SGD step
    expected = torch_tos.profile(model, batch, mode="training", loss_fn=hf_loss, optimizer=opt)
    reporter = _Reporter()
    tos = TOsTrainerCallback(meter=_Meter())
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2,
                             logging_steps=1, report_to=[], max_grad_norm=0, save_strategy="no",
                             use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=data, optimizers=(opt, None),
                      callbacks=[reporter, tos])
    trainer.train()
    steps = [r for r in tos.counter.steps if r.kind == "training"]
    assert len(steps) == 2
    for rec in steps:  # what runs in the model and the optimizer equals profile() of the step
        for phase in ("forward", "optimizer"):
            assert rec.phases[phase].bos == expected.by_phase()[phase].bos
        assert rec.phases["backward"].flops == expected.by_phase()["backward"].flops
    logged = [h for h in trainer.state.log_history if "tos/step" in h]
    assert [h["step"] for h in logged] == [1, 2]
    assert logged[0]["tos/step"] == steps[0].tos and logged[1]["tos/total"] == steps[0].tos + steps[1].tos
    assert logged[0]["flops/step"] == float(steps[0].flops)
    assert logged[0]["energy/joules"] == 2.0 and logged[0]["energy/joules_per_tos"] == 2.0 / steps[0].tos
    # the reporting callback, registered before ours, got the scalars in the same on_log call
    assert [d["tos/step"] for d in reporter.logged if "loss" in d] == [steps[0].tos, steps[1].tos]
    assert not tos._active and not any(m._forward_hooks for m in model.modules())
