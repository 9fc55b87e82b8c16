"""Training: configuration, state, compiled steps, stopping rules and the ``fit`` loop."""

from jnn.train.config import OPTIMIZERS, TrainConfig
from jnn.train.loop import FitResult, evaluate, fit, prepare_data
from jnn.train.state import STATUS, TrainState, init_state
from jnn.train.step import TRACE_COUNTS, Batch, make_steps
from jnn.train.stopping import EarlyStopping, EarlyStoppingState

__all__ = ["TrainConfig", "OPTIMIZERS", "FitResult", "fit", "evaluate", "prepare_data", "TrainState", "init_state",
           "STATUS", "TRACE_COUNTS", "Batch", "make_steps", "EarlyStopping", "EarlyStoppingState"]
