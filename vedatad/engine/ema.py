"""Exponential moving average of a model's weights (decay 0.999 in the release).

Every state entry is averaged (parameters and floating buffers); integer buffers are
copied. The averaged copy is what gets evaluated.
"""
import copy

import torch


class ModelEMA:
    def __init__(self, model, decay=0.999):
        self.decay = decay
        self.module = copy.deepcopy(model)
        self.module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model):
        model_state = model.state_dict()
        for name, ema_value in self.module.state_dict().items():
            value = model_state[name].detach()
            if ema_value.dtype.is_floating_point:
                ema_value.mul_(self.decay).add_(value.to(ema_value.dtype), alpha=1.0 - self.decay)
            else:
                ema_value.copy_(value)

    def state_dict(self):
        return self.module.state_dict()

    def load_state_dict(self, state, strict=True):
        return self.module.load_state_dict(state, strict=strict)
