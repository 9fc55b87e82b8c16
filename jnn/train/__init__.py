"""Training: configuration, state, the compiled step and epoch, stopping rules, ``fit`` and ``evaluate``."""

from jnn.train.best_k import BestCheckpoints
from jnn.train.config import OPTIMIZERS, TrainConfig
from jnn.train.epoch import EpochData, make_eval, make_run_epoch
from jnn.train.evaluation import evaluate
from jnn.train.host_loop import Interrupted
from jnn.train.keys import Keys
from jnn.train.loop import FitResult, fit
from jnn.train.plateau import ReduceLROnPlateau
from jnn.train.run_setup import prepare_data
from jnn.train.state import STATUS, Status, TrainState, init_state
from jnn.train.step import Batch, make_train_step
from jnn.train.stopping import EarlyStopping, EarlyStoppingState

__all__ = [
    "TrainConfig",
    "OPTIMIZERS",
    "FitResult",
    "fit",
    "evaluate",
    "prepare_data",
    "TrainState",
    "init_state",
    "Interrupted",
    "STATUS",
    "Status",
    "Batch",
    "make_train_step",
    "make_run_epoch",
    "make_eval",
    "EpochData",
    "Keys",
    "EarlyStopping",
    "EarlyStoppingState",
    "ReduceLROnPlateau",
    "BestCheckpoints",
]
