"""jnn: functional feed-forward neural-network training on JAX.

The public API, re-exported by name. Parameters are plain pytrees (a list of ``{"w", "b"}`` dicts);
every function is pure and takes its PRNG key explicitly.
"""

from jnn.activations import ACTIVATIONS, Activation, get_activation
from jnn.backprop import backprop, node_backprop
from jnn.dropout import Dropout
from jnn.gradcheck import (GradReport, LeafReport, TaylorResult, compare_grads, finite_difference_grad,
                           float64_mode, taylor_test)
from jnn.init import SCHEMES, init_mlp
from jnn.losses import (binary_cross_entropy, l2_penalty, per_example_loss, regularized_loss,
                        softmax_cross_entropy)
from jnn.model import ForwardCache, forward, forward_cache
from jnn import checkpoint, datasets
from jnn.data import Dataset, epoch_batches, split
from jnn.history import History
from jnn.train import EarlyStopping, FitResult, TrainConfig, TrainState, evaluate, fit

__version__ = "0.1.0"

__all__ = [
    "Dataset", "EarlyStopping", "FitResult", "History", "TrainConfig", "TrainState", "checkpoint", "datasets",
    "epoch_batches", "evaluate", "fit", "split",
    "ACTIVATIONS", "Activation", "Dropout", "ForwardCache", "GradReport", "LeafReport", "SCHEMES", "TaylorResult",
    "backprop", "binary_cross_entropy", "compare_grads", "finite_difference_grad", "float64_mode", "forward",
    "forward_cache", "get_activation", "init_mlp", "l2_penalty", "node_backprop", "per_example_loss",
    "regularized_loss", "softmax_cross_entropy", "taylor_test", "__version__",
]
