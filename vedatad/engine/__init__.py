"""Training and testing engine: distributed set-up, optimiser / schedule, EMA, checkpoints,
training loop, inference and evaluation."""
from .checkpoint import find_latest, load_checkpoint, load_model_weights, save_checkpoint
from .dist import DistInfo, init_distributed
from .ema import ModelEMA
from .lr_scheduler import WarmupCosineLR, WarmupMultiStepLR, build_scheduler
from .optimizer import build_optimizer, split_decay
from .testing import test
from .trainer import Trainer, train

__all__ = ['DistInfo', 'ModelEMA', 'Trainer', 'WarmupCosineLR', 'WarmupMultiStepLR',
           'build_optimizer', 'build_scheduler', 'find_latest', 'init_distributed',
           'load_checkpoint', 'load_model_weights', 'save_checkpoint', 'split_decay', 'test',
           'train']
