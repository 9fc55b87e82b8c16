"""jnn: functional feed-forward neural-network training on JAX.

The public API, re-exported by name. Parameters are plain pytrees (the built-in MLP: a list of
``{"w", "b"}`` dicts; a ``jnn.Task`` may use any pytree); every function is pure and takes its
PRNG key explicitly.
"""

from jnn import datasets, debug, metrics, results, testing
from jnn._version import __version__
from jnn.activations import ACTIVATIONS, Activation, get_activation
from jnn.backprop import backprop, node_backprop
from jnn.data import Dataset, epoch_batches, split
from jnn.dropout import Dropout
from jnn.gradcheck import (
    CheckReport,
    LeafCheck,
    OpCheck,
    TaylorResult,
    check_grads,
    compare_grads,
    finite_difference_grad,
    float64_mode,
    taylor_test,
)
from jnn.history import History
from jnn.init import SCHEMES, init_mlp
from jnn.losses import (
    LOSSES,
    binary_cross_entropy,
    l2_penalty,
    mean_squared_error,
    multilabel_cross_entropy,
    per_example_loss,
    regularized_loss,
    softmax_cross_entropy,
)
from jnn.mlp import MLP, mlp_task
from jnn.model import ForwardCache, forward, forward_cache
from jnn.model_summary import ModelSummary, summary
from jnn.task import Task
from jnn.train import (
    BestCheckpoints,
    EarlyStopping,
    FitResult,
    Keys,
    ReduceLROnPlateau,
    TrainConfig,
    TrainState,
    evaluate,
    fit,
)
from jnn.train.averaging import weight_average
from jnn.train.callbacks import Callback, RunInfo
from jnn.train.progress import Progress

__all__ = [
    "Callback",
    "Progress",
    "RunFolder",
    "SweepFolder",
    "CSVLogger",
    "MLflowLogger",
    "RunInfo",
    "weight_average",
    "Dataset",
    "EarlyStopping",
    "ReduceLROnPlateau",
    "BestCheckpoints",
    "FitResult",
    "History",
    "Keys",
    "Task",
    "TrainedModel",
    "load_run",
    "save_sweep",
    "TrainConfig",
    "TrainState",
    "checkpoint",
    "debug",
    "testing",
    "results",
    "check_grads",
    "CheckReport",
    "datasets",
    "epoch_batches",
    "evaluate",
    "fit",
    "metrics",
    "MLP",
    "mlp_task",
    "split",
    "LOSSES",
    "mean_squared_error",
    "multilabel_cross_entropy",
    "ACTIVATIONS",
    "Activation",
    "Dropout",
    "ForwardCache",
    "LeafCheck",
    "OpCheck",
    "SCHEMES",
    "TaylorResult",
    "backprop",
    "binary_cross_entropy",
    "compare_grads",
    "finite_difference_grad",
    "float64_mode",
    "forward",
    "forward_cache",
    "get_activation",
    "init_mlp",
    "l2_penalty",
    "node_backprop",
    "per_example_loss",
    "regularized_loss",
    "softmax_cross_entropy",
    "taylor_test",
    "__version__",
    "ModelSummary",
    "summary",
]


#: The application wing's public names (``jnn.app``), imported on first use: ``import jnn`` loads only the core.
_APP_NAMES = {
    "TrainedModel": "trained",
    "load_run": "trained",
    "RunFolder": "run_folder",
    "SweepFolder": "sweep_folder",
    "CSVLogger": "loggers",
    "MLflowLogger": "loggers",
    "save_sweep": "sweep_files",
}


#: Modules of the core that ``import jnn`` does not load (the study tools), loaded on first use.
_CORE_MODULES = ("sweep", "search", "axes", "schedulers", "cluster", "tpe", "protocol", "parallel", "adapters", "cv")


def __getattr__(name: str):
    """The application wing's public names (``_APP_NAMES``), its ``checkpoint``, ``plots`` and ``tune``
    modules, and the study modules of ``_CORE_MODULES`` (``jnn.sweep``), on first use."""
    import importlib

    if name in ("checkpoint", "plots", "tune"):  # plots needs matplotlib, tune Ray Tune (pip install 'jnn[ray]')
        return importlib.import_module(f"jnn.app.{name}")
    if name in _CORE_MODULES:  # jnn.sweep.sweep(...) after a plain `import jnn`
        return importlib.import_module(f"jnn.{name}")
    if name in _APP_NAMES:
        return getattr(importlib.import_module(f"jnn.app.{_APP_NAMES[name]}"), name)
    raise AttributeError(f"module 'jnn' has no attribute {name!r}")
