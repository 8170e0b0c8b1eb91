"""Training and testing engine: distributed set-up, optimiser / schedule, EMA, checkpoints,
training loop, inference and evaluation."""
from .checkpoint import (CheckpointError, UnsafeFileError, find_latest, load_checkpoint,
                         load_model_weights, save_checkpoint)
from .dist import DistInfo, init_distributed
from .ema import ModelEMA
from .lr_scheduler import WarmupCosineLR, WarmupMultiStepLR, build_scheduler
from .optimizer import build_optimizer, split_decay
from .testing import test
from .trainer import ResumeError, Trainer, TrainingInterrupted, train
from .workdir import WorkDirInUseError

__all__ = ['CheckpointError', 'DistInfo', 'ModelEMA', 'ResumeError', 'Trainer',
           'TrainingInterrupted', 'UnsafeFileError', 'WarmupCosineLR', 'WarmupMultiStepLR',
           'WorkDirInUseError', 'build_optimizer', 'build_scheduler', 'find_latest',
           'init_distributed', 'load_checkpoint', 'load_model_weights', 'save_checkpoint',
           'split_decay', 'test', 'train']
