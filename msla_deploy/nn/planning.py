"""Fix every LiteMLA in a model to the static shapes of one input.

One eager forward with hooks records the input shape each attention module sees; each module
then gets an `AttentionPlan`. The same forward's output is returned, so a caller that needs a
PyTorch reference (export does) pays for one forward, not two.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Tuple

import torch
from torch import nn

from .litemla import ANY_BATCH, AttentionPlan, LiteMLA


def attention_modules(model: nn.Module) -> List[Tuple[str, LiteMLA]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LiteMLA)]


def clear_plans(model: nn.Module) -> None:
    for _, module in attention_modules(model):
        module.plan = None


@torch.no_grad()
def plan_static(
    model: nn.Module, example: torch.Tensor, dynamic_batch: bool = False
) -> Tuple[object, Dict[str, AttentionPlan]]:
    """Plan every LiteMLA of `model` for `example`'s shape; return (model output, plans by name).
    `dynamic_batch`: every size but the batch is fixed; the batch is left to the graph (-1)."""
    modules = attention_modules(model)
    clear_plans(model)
    seen: Dict[str, Tuple[int, ...]] = {}
    hooks = [
        module.register_forward_pre_hook(lambda mod, args, name=name: seen.__setitem__(name, tuple(args[0].shape)))
        for name, module in modules
    ]
    try:
        output = model(example)
    finally:
        for hook in hooks:
            hook.remove()
    plans = {}
    for name, module in modules:
        if name not in seen:
            raise ValueError(f"LiteMLA {name!r} was not called by the model's forward; it cannot be planned")
        plan = module.plan_for(seen[name])
        module.plan = plans[name] = dataclasses.replace(plan, batch=ANY_BATCH) if dynamic_batch else plan
    return output, plans
