"""An open Engine's ``Tensor.__bool__``/``item`` wrappers (integrations.hf_meta, installed once
``transformers.masking_utils`` is imported) leave TOsCounter's call sequence unchanged: a step
counted (Engine open, wrappers installed) and the same step replayed (no Engine, stock methods)
are the same events, so the replay is a cache hit. Before the fix the wrapper's ``self.device``
read was an extra traced call and the wrapper itself a different function key, so this depended
on whether an earlier test had imported transformers."""

import pytest
import torch
import torch.nn as nn

from torch_tos import TOsCounter
from torch_tos.integrations import hf_meta

pytest.importorskip("transformers.masking_utils")


def test_item_and_bool_under_counting_are_the_events_of_a_replay():
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    x = torch.randn(8, 4)
    seen = []
    with TOsCounter(model, cache=True) as counter:
        for _ in range(3):
            with torch.no_grad():
                out = model(x)
                seen.append(hf_meta.installed())  # wrappers in place while this step is counted?
                assert out.sum().item() != 12345.0 and bool(out.abs().sum() >= 0)
            counter.step()
    assert [r.cache for r in counter.steps] == ["miss", "hit", "hit"]
    assert seen[0] and not seen[1]  # step 0 ran with the wrappers, step 1 without
