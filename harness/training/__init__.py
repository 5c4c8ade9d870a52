"""Training: models, data, losses, optimiser settings, loops and traces.

Public entry points: :func:`build` (models by name), :func:`get_loss`, :func:`get_settings`,
:func:`load_data` / :class:`BatchSampler`, :func:`train` / :func:`prepare` / :func:`d_step` /
:func:`g_step`, :class:`Tracer`, :func:`save_grid` / :func:`save_scatter`.
"""
from .data import (GRID25, RING8, BatchSampler, DataSource, DatasetCorruptError, DatasetNotFoundError,
                   Mixture, load_data)
from .loop import (CheckpointMismatchError, Session, StopTraining, TrainResult, d_step, g_step, prepare,
                   sample_z, train)
from .losses import GANLoss, get_loss
from .models import available_models, build
from .samples import save_grid, save_scatter
from .settings import SETTINGS, AdamSettings, get_settings, make_optimizers
from .traces import DEFAULT_TRACES, Tracer, to_frame

__all__ = [
    "GRID25", "RING8", "BatchSampler", "DataSource", "DatasetCorruptError", "DatasetNotFoundError",
    "Mixture", "load_data", "CheckpointMismatchError", "Session", "StopTraining", "TrainResult",
    "d_step", "g_step", "prepare", "sample_z", "train", "GANLoss", "get_loss", "available_models",
    "build", "save_grid", "save_scatter", "SETTINGS", "AdamSettings", "get_settings",
    "make_optimizers", "DEFAULT_TRACES", "Tracer", "to_frame",
]
