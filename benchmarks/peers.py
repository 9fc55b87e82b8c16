#!/usr/bin/env python
"""peers.py -- jnn.fit side by side with established neural-network stacks, on the CPU.

The team's peer harness (``shared/bench/peers.py``), carried into the project so that it runs from a clone:
Flax NNX (with and without ``cached_partial``), Equinox, hand-written raw JAX (per step and scan epoch),
scikit-learn, PyTorch (eager; ``torch.compile`` outside ``--quick``) when importable, and ``jnn.fit``,
interleaved in one run on the same workloads. Install the peers with ``pip install -e '.[bench]'``
(PyTorch is not in the extra: install it yourself, e.g. the CPU wheel); a stack whose library is missing is
reported as failed and the others run.

Usage::

    python benchmarks/peers.py --out runs/bench_peers/results.json [--md runs/bench_peers/RESULTS.md] [--quick]
                    [--stacks torch_eager,jax_scan] [--workloads large,small,sweep]

What is measured (see ``WORKLOADS``, ``STACKS`` and ``run_workload``):

* Workloads ("large": 784-1024-1024-10 on synthetic data, batch 256, lr 0.05;
  "small": 40-100-100-10 on MNIST-1D, batch 100, lr 0.1).  Both: ReLU, inverted
  dropout with keep probability 0.8 after each hidden layer, loss = mean softmax
  cross-entropy + 1e-4 * sum of squared weights (biases excluded), plain SGD
  (no momentum, no weight decay other than that L2 term).  One epoch is one
  pass over a fresh random permutation of the training set in full minibatches
  (large: 64 steps x 256 = 16384, small: 40 steps x 100 = 4000).
* For every stack and workload: time of the first epoch (includes tracing /
  compilation), then ``repeats`` timed rounds of ``block`` epochs each.  The
  stacks are *interleaved* (shuffled order in every round) so that drift and
  noise on this shared machine hit all stacks alike; every turn starts with a
  short pause and untimed epoch(s) (see ``Plan``), because the thread pools of
  one library (OpenBLAS, OpenMP, Eigen) keep spinning for a while after it
  finishes and would otherwise slow down whichever stack runs next.
  Samples/s is the median over rounds; speed ratios are the median over rounds
  of the per-round ratio (same run, same round).  Every ``Trainer.epoch()``
  returns only after its work has finished (JAX stacks call
  ``jax.block_until_ready``).
* Achieved GFLOP/s counts 6 * (number of weights) FLOPs per training sample
  (2 forward + 2 weight-gradient + 2 input-gradient per weight).  This
  overcounts the matmul work actually needed (no stack computes the input
  gradient of the first layer: -14% on "large", -9% on "small"), so a fraction
  of the measured 2048^3 float32 matmul rate can come out above 1.
* Final training loss: every stack's final weights are evaluated by one shared
  NumPy function (full training set, dropout off, cross-entropy + L2 term), after
  the same number of epochs for all stacks of a workload.
* "sweep": 32 independent copies of the small model (different seeds) trained
  with the one-dispatch-per-epoch ``lax.scan`` step of stack ``jax_scan``:
  (a) one model after the other, (b) all at once under ``jax.vmap``.

``--quick`` (automated checks, < 90 s): "large" epochs shortened to 8 steps,
3 timed rounds, 8-model sweep, fewer matmul repeats, and ``torch_compile`` left
out (its cold compile alone takes 15-30 s per workload); name it in
``--stacks`` to include it anyway.  Quick numbers are smoke-test grade only.

Adding a stack: write one function ``f(wl: Workload, seed: int) -> Trainer``
and decorate it with ``@register("name", "label")``.  ``Trainer.epoch`` runs
``wl.steps_per_epoch`` SGD steps on minibatches of ``wl.batch`` (e.g. from
``wl.batches(rng)``) and returns only when the work is done;
``Trainer.weights`` returns ``[(W (fan_in, fan_out), b), ...]`` as NumPy
arrays.  The harness does all timing, statistics, evaluation and reporting::

    @register("my_framework", "My framework")
    def stack_my_framework(wl: Workload, seed: int) -> Trainer:
        model = ...                                   # wl.sizes, wl.keep, wl.l2, wl.lr
        rng = np.random.default_rng(seed)

        def epoch():
            for xb, yb in wl.batches(rng):            # NumPy float32 / int32
                ...                                   # one SGD step
            ...                                       # block until done

        return Trainer(epoch, lambda: ..., init="...", notes="...")
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import gc
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator

# Environment that must be set before the heavy imports.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# A fresh Inductor cache directory per run, so torch.compile's first epoch is a
# cold compile (the default on-disk cache would make repeated runs look faster).
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="peers_inductor_")
    atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jnn import Progress

THREADS = 2  # the machine has 2 cores; torch is pinned to this, XLA/OpenBLAS use all cores


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Workload:
    """One training problem, identical for every stack."""

    name: str
    sizes: tuple[int, ...]  # layer widths, input first: (784, 1024, 1024, 10)
    keep: float  # dropout keep probability (drop rate = 1 - keep)
    l2: float  # lambda in  lambda * sum(W**2)  (weights only)
    lr: float
    batch: int
    steps_per_epoch: int
    X: np.ndarray  # (N, sizes[0]) float32, C-contiguous
    y: np.ndarray  # (N,) int32 labels in [0, sizes[-1])
    data: str  # description of the data

    @property
    def n_train(self) -> int:
        return self.X.shape[0]

    @property
    def samples_per_epoch(self) -> int:
        return self.batch * self.steps_per_epoch

    @property
    def n_weights(self) -> int:
        return sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    @property
    def n_params(self) -> int:
        return self.n_weights + sum(self.sizes[1:])

    @property
    def flops_per_sample(self) -> int:
        """The convention used for all GFLOP/s figures: 6 FLOPs per weight per sample."""
        return 6 * self.n_weights

    @property
    def flops_per_sample_exact(self) -> int:
        """Matmul FLOPs actually needed: 6 per weight minus the unused input gradient of layer 1."""
        return 6 * self.n_weights - 2 * self.sizes[0] * self.sizes[1]

    def batches(self, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Host-side minibatches of one epoch: a fresh permutation, full batches only."""
        perm = rng.permutation(self.n_train)
        for i in range(self.steps_per_epoch):
            idx = perm[i * self.batch : (i + 1) * self.batch]
            yield self.X[idx], self.y[idx]

    def config(self) -> dict:
        return {
            "sizes": list(self.sizes),
            "activation": "relu",
            "dropout_rate": round(1 - self.keep, 6),
            "keep_prob": self.keep,
            "l2_lambda": self.l2,
            "loss": "mean softmax CE + l2_lambda * sum(W**2), biases excluded",
            "optimizer": "SGD (no momentum)",
            "lr": self.lr,
            "batch": self.batch,
            "steps_per_epoch": self.steps_per_epoch,
            "samples_per_epoch": self.samples_per_epoch,
            "n_train": self.n_train,
            "n_weights": self.n_weights,
            "n_params": self.n_params,
            "flops_per_sample": self.flops_per_sample,
            "flops_per_sample_exact_matmul": self.flops_per_sample_exact,
            "data": self.data,
        }


def make_large(quick: bool) -> Workload:
    """784-1024-1024-10 on 16384 synthetic samples (fixed seed 0).

    X ~ N(0, 1) float32; labels come from a fixed random linear teacher plus
    noise (argmax of X @ T + 0.5 * N(0, 1)), so the loss can actually go down.
    """
    rng = np.random.default_rng(0)
    n, d, c = 16384, 784, 10
    X = rng.standard_normal((n, d), dtype=np.float32)
    T = rng.standard_normal((d, c), dtype=np.float32) / np.sqrt(d)
    y = np.argmax(X @ T + 0.5 * rng.standard_normal((n, c), dtype=np.float32), axis=1).astype(np.int32)
    return Workload(
        name="large",
        sizes=(784, 1024, 1024, 10),
        keep=0.8,
        l2=1e-4,
        lr=0.05,
        batch=256,
        steps_per_epoch=8 if quick else 64,
        X=X,
        y=y,
        data="synthetic: 16384 x 784 float32 N(0,1), labels argmax(X @ T + 0.5 N(0,1)) with a random teacher T, seed 0",
    )


def make_small(quick: bool) -> Workload:
    """40-100-100-10 on MNIST-1D, built locally (4000 train samples)."""
    from mnist1d.data import get_dataset_args, make_dataset

    with contextlib.redirect_stdout(sys.stderr):
        ds = make_dataset(get_dataset_args())
    X = np.ascontiguousarray(ds["x"], dtype=np.float32)
    y = np.asarray(ds["y"], dtype=np.int32)
    return Workload(
        name="small",
        sizes=(40, 100, 100, 10),
        keep=0.8,
        l2=1e-4,
        lr=0.1,
        batch=100,
        steps_per_epoch=40,
        X=X,
        y=y,
        data="MNIST-1D, make_dataset(get_dataset_args()) (seed 42): 4000 train x 40 features, raw values as float32",
    )


WORKLOADS: dict[str, Callable[[bool], Workload]] = {"large": make_large, "small": make_small}


# --------------------------------------------------------------------------------------
# Stack registry
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Trainer:
    """What a stack hands to the harness.

    epoch():   run one epoch (wl.steps_per_epoch SGD steps) and return only when
               all of its work has finished.
    weights(): final parameters as [(W with shape (fan_in, fan_out), b), ...] in NumPy.
    """

    epoch: Callable[[], None]
    weights: Callable[[], list[tuple[np.ndarray, np.ndarray]]]
    init: str  # the initialisation scheme, in words
    notes: str = ""
    # Optional: a stack that cannot be driven epoch by epoch (jnn.fit) runs one whole turn itself:
    # turn(pre, block) runs its untimed + timed epochs and returns the mean seconds of the ``block``
    # timed epochs (measured by the stack's own per-epoch wall clock).
    turn: Callable[[int, int], float] | None = None


@dataclasses.dataclass
class Stack:
    name: str
    label: str
    build: Callable[[Workload, int], Trainer]
    in_quick: bool = True  # run under --quick unless --stacks names it explicitly


STACKS: dict[str, Stack] = {}


def register(name: str, label: str, in_quick: bool = True):
    """Decorator: register ``fn(wl, seed) -> Trainer`` as a stack."""

    def deco(fn: Callable[[Workload, int], Trainer]):
        STACKS[name] = Stack(name, label, fn, in_quick)
        return fn

    return deco


# --------------------------------------------------------------------------------------
# Stacks 1-2: PyTorch
# --------------------------------------------------------------------------------------

TORCH_INIT = "torch.nn.Linear default: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))"


def _torch_trainer(wl: Workload, seed: int, compiled: bool) -> Trainer:
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.set_num_threads(THREADS)
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(wl.sizes[:-1], wl.sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(wl.sizes) - 2:
            layers += [nn.ReLU(), nn.Dropout(p=1 - wl.keep)]
    model = nn.Sequential(*layers)
    model.train()
    linears = [m for m in model if isinstance(m, nn.Linear)]
    weights_only = [m.weight for m in linears]
    opt = torch.optim.SGD(model.parameters(), lr=wl.lr)  # momentum=0, weight_decay=0

    def loss_fn(x, y):
        l2 = sum(w.pow(2).sum() for w in weights_only)
        return F.cross_entropy(model(x), y) + wl.l2 * l2

    step_loss = torch.compile(loss_fn) if compiled else loss_fn
    Xt = torch.from_numpy(wl.X)
    yt = torch.from_numpy(wl.y.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)

    def epoch():
        perm = torch.randperm(wl.n_train, generator=gen)
        for i in range(wl.steps_per_epoch):
            idx = perm[i * wl.batch : (i + 1) * wl.batch]
            opt.zero_grad(set_to_none=True)
            loss = step_loss(Xt[idx], yt[idx])
            loss.backward()
            opt.step()

    def weights():
        with torch.no_grad():
            return [(m.weight.T.numpy().copy(), m.bias.numpy().copy()) for m in linears]

    notes = (
        "nn.Sequential + nn.Dropout, torch.optim.SGD (default foreach impl), L2 added to the loss; "
        "minibatches gathered from in-memory tensors with torch.randperm (DataLoader not used)"
    )
    if compiled:
        notes += (
            "; torch.compile(default mode, Inductor C++ backend) wraps forward + loss (+ its AOTAutograd "
            "backward); optimizer step eager; cold Inductor cache"
        )
    return Trainer(epoch, weights, TORCH_INIT, notes)


@register("torch_eager", "PyTorch eager")
def stack_torch_eager(wl: Workload, seed: int) -> Trainer:
    return _torch_trainer(wl, seed, compiled=False)


@register("torch_compile", "PyTorch torch.compile", in_quick=False)
def stack_torch_compile(wl: Workload, seed: int) -> Trainer:
    return _torch_trainer(wl, seed, compiled=True)


# --------------------------------------------------------------------------------------
# Stacks 3-4: Flax NNX and Equinox
# --------------------------------------------------------------------------------------


def _ce(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _flax_trainer(wl: Workload, seed: int, cached: bool) -> Trainer:
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, sizes, rate, rngs: nnx.Rngs):
            self.linears = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
            self.dropouts = nnx.List([nnx.Dropout(rate, rngs=rngs) for _ in sizes[1:-1]])

        def __call__(self, x):
            for lin, drop in zip(self.linears[:-1], self.dropouts):
                x = drop(nnx.relu(lin(x)))
            return self.linears[-1](x)

    model = MLP(wl.sizes, 1 - wl.keep, rngs=nnx.Rngs(params=seed, dropout=seed + 1))
    optimizer = nnx.Optimizer(model, optax.sgd(wl.lr), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            l2 = sum(jnp.sum(lin.kernel[...] ** 2) for lin in model.linears)
            return _ce(model(x), y) + wl.l2 * l2

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    step = nnx.cached_partial(train_step, model, optimizer) if cached else None
    rng = np.random.default_rng(seed)

    def epoch():
        loss = None
        for xb, yb in wl.batches(rng):
            loss = step(xb, yb) if cached else train_step(model, optimizer, xb, yb)
        jax.block_until_ready((loss, nnx.state(model)))

    def weights():
        return [(np.asarray(lin.kernel[...]), np.asarray(lin.bias[...])) for lin in model.linears]

    notes = (
        "nnx.Module with nnx.Linear / nnx.Dropout(rngs=nnx.Rngs(params, dropout)), nnx.Optimizer(optax.sgd), "
        "train_step under @nnx.jit (default graph mode)"
    )
    if cached:
        notes += (
            "; called through nnx.cached_partial(train_step, model, optimizer) as the Flax performance guide recommends"
        )
    return Trainer(
        epoch, weights, "flax.nnx.Linear default: W ~ lecun_normal (truncated normal, var 1/fan_in), b = 0", notes
    )


@register("flax_nnx", "Flax NNX (nnx.jit)")
def stack_flax_nnx(wl: Workload, seed: int) -> Trainer:
    return _flax_trainer(wl, seed, cached=False)


@register("flax_nnx_cached", "Flax NNX (nnx.jit + cached_partial)")
def stack_flax_nnx_cached(wl: Workload, seed: int) -> Trainer:
    return _flax_trainer(wl, seed, cached=True)


@register("equinox", "Equinox (filter_jit)")
def stack_equinox(wl: Workload, seed: int) -> Trainer:
    import equinox as eqx

    keys = jax.random.split(jax.random.key(seed), len(wl.sizes))
    layers = []
    for i, (a, b) in enumerate(zip(wl.sizes[:-1], wl.sizes[1:])):
        layers.append(eqx.nn.Linear(a, b, key=keys[i]))
        if i < len(wl.sizes) - 2:
            layers += [eqx.nn.Lambda(jax.nn.relu), eqx.nn.Dropout(p=1 - wl.keep)]
    model = eqx.nn.Sequential(layers)
    opt = optax.sgd(wl.lr)
    opt_state = opt.init(eqx.filter(model, eqx.is_array))

    def linears(m):
        return [layer for layer in m.layers if isinstance(layer, eqx.nn.Linear)]

    def loss_fn(model, x, y, key):
        # Equinox layers act on single examples: vmap over the batch, one dropout key per example.
        logits = jax.vmap(lambda xi, ki: model(xi, key=ki))(x, jax.random.split(key, x.shape[0]))
        l2 = sum(jnp.sum(lin.weight**2) for lin in linears(model))
        return _ce(logits, y) + wl.l2 * l2

    @eqx.filter_jit
    def train_step(model, opt_state, key, x, y):
        key, sub = jax.random.split(key)
        loss, grads = eqx.filter_value_and_grad(loss_fn)(model, x, y, sub)
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, key, loss

    state = [model, opt_state, keys[-1]]
    rng = np.random.default_rng(seed)

    def epoch():
        m, s, k = state
        for xb, yb in wl.batches(rng):
            m, s, k, _ = train_step(m, s, k, xb, yb)
        jax.block_until_ready(eqx.filter((m, s, k), eqx.is_array))
        state[:] = [m, s, k]

    def weights():
        return [(np.asarray(lin.weight).T.copy(), np.asarray(lin.bias)) for lin in linears(state[0])]

    return Trainer(
        epoch,
        weights,
        "equinox.nn.Linear default: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))",
        "eqx.nn.Sequential(Linear, Lambda(relu), Dropout), per-example jax.vmap with one dropout key per example, "
        "optax.sgd, step under eqx.filter_jit (no donation)",
    )


# --------------------------------------------------------------------------------------
# Stacks 5-6: raw JAX references (also used by the sweep)
# --------------------------------------------------------------------------------------

JAX_INIT = "lecun_normal for W (truncated normal, var 1/fan_in; same as Flax's default), b = 0"


def jax_init_params(key, sizes):
    """Params as a list of (W, b); W has shape (fan_in, fan_out)."""
    init = jax.nn.initializers.lecun_normal()
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        (init(k, (a, b), jnp.float32), jnp.zeros((b,), jnp.float32)) for k, a, b in zip(keys, sizes[:-1], sizes[1:])
    ]


def jax_forward(params, x, key, keep):
    """MLP forward; inverted dropout after every hidden ReLU when ``key`` is given and keep < 1."""
    keys = jax.random.split(key, len(params) - 1) if key is not None and keep < 1.0 else None
    for i, (W, b) in enumerate(params):
        x = x @ W + b
        if i < len(params) - 1:
            x = jax.nn.relu(x)
            if keys is not None:
                mask = jax.random.bernoulli(keys[i], keep, x.shape)
                x = jnp.where(mask, x / keep, 0.0)
    return x


def make_jax_step(wl: Workload):
    """Return (optax optimizer, pure ``train_step(params, opt_state, key, x, y)``)."""
    opt = optax.sgd(wl.lr)

    def loss_fn(params, x, y, key):
        l2 = sum(jnp.sum(W * W) for W, _ in params)
        return _ce(jax_forward(params, x, key, wl.keep), y) + wl.l2 * l2

    def train_step(params, opt_state, key, x, y):
        key, sub = jax.random.split(key)
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y, sub)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, key, loss

    return opt, train_step


def make_jax_epoch(wl: Workload):
    """Return (optimizer, pure ``train_epoch(params, opt_state, key, X, y)``): a whole epoch
    as one lax.scan over minibatches of a permutation drawn inside the function."""
    opt, train_step = make_jax_step(wl)
    steps, batch = wl.steps_per_epoch, wl.batch

    def train_epoch(params, opt_state, key, X, y):
        key, k_perm, k_steps = jax.random.split(key, 3)
        idx = jax.random.permutation(k_perm, X.shape[0])[: steps * batch].reshape(steps, batch)

        def body(carry, ib):
            p, s, k = carry
            p, s, k, loss = train_step(p, s, k, X[ib], y[ib])
            return (p, s, k), loss

        (params, opt_state, _), losses = jax.lax.scan(body, (params, opt_state, k_steps), idx)
        return params, opt_state, key, losses.mean()

    return opt, train_epoch


def _np_weights(params):
    return [(np.asarray(W), np.asarray(b)) for W, b in params]


@register("jax_step", "raw JAX A (jit per step)")
def stack_jax_step(wl: Workload, seed: int) -> Trainer:
    opt, train_step = make_jax_step(wl)
    step = jax.jit(train_step, donate_argnums=(0, 1))
    k_init, key = jax.random.split(jax.random.key(seed))
    params = jax_init_params(k_init, wl.sizes)
    state = [params, opt.init(params), key]
    rng = np.random.default_rng(seed)

    def epoch():
        p, s, k = state
        for xb, yb in wl.batches(rng):
            p, s, k, _ = step(p, s, k, xb, yb)
        jax.block_until_ready((p, s, k))
        state[:] = [p, s, k]

    return Trainer(
        epoch,
        lambda: _np_weights(state[0]),
        JAX_INIT,
        "pure forward/loss over a list of (W, b); jax.jit(train_step, donate params+opt state), "
        "optax.sgd, dropout mask jax.random.bernoulli with the key split inside each step; "
        "one Python call per minibatch (host NumPy batches)",
    )


@register("jax_scan", "raw JAX B (lax.scan epoch)")
def stack_jax_scan(wl: Workload, seed: int) -> Trainer:
    opt, train_epoch = make_jax_epoch(wl)
    run_epoch = jax.jit(train_epoch, donate_argnums=(0, 1))
    X, y = jnp.asarray(wl.X), jnp.asarray(wl.y)
    k_init, key = jax.random.split(jax.random.key(seed))
    params = jax_init_params(k_init, wl.sizes)
    state = [params, opt.init(params), key]

    def epoch():
        p, s, k, _ = run_epoch(*state, X, y)
        jax.block_until_ready((p, s, k))
        state[:] = [p, s, k]

    return Trainer(
        epoch,
        lambda: _np_weights(state[0]),
        JAX_INIT,
        "same train_step as jax_step, whole epoch in one jitted function: jax.random.permutation "
        "inside, lax.scan over minibatches gathered on device; one dispatch per epoch",
    )


# --------------------------------------------------------------------------------------
# Stack 7: scikit-learn
# --------------------------------------------------------------------------------------


@register("sklearn", "scikit-learn MLPClassifier")
def stack_sklearn(wl: Workload, seed: int) -> Trainer:
    from sklearn.neural_network import MLPClassifier

    # sklearn's per-minibatch penalty is alpha / (2 * batch) * sum(W**2), so
    # alpha = 2 * lambda * batch gives lambda * sum(W**2) exactly (all batches are full).
    clf = MLPClassifier(
        hidden_layer_sizes=tuple(wl.sizes[1:-1]),
        activation="relu",
        solver="sgd",
        alpha=2 * wl.l2 * wl.batch,
        batch_size=wl.batch,
        learning_rate="constant",
        learning_rate_init=wl.lr,
        momentum=0.0,
        nesterovs_momentum=False,
        shuffle=True,
        early_stopping=None,
        random_state=seed,
    )
    classes = np.arange(wl.sizes[-1])
    rng = np.random.default_rng(seed)
    n_used = wl.samples_per_epoch

    def epoch():
        if n_used == wl.n_train:
            clf.partial_fit(wl.X, wl.y, classes=classes)  # one pass, shuffled by sklearn
        else:  # --quick: a shorter "epoch" on a random subset
            idx = rng.choice(wl.n_train, n_used, replace=False)
            clf.partial_fit(wl.X[idx], wl.y[idx], classes=classes)

    def weights():
        return [(W.copy(), b.copy()) for W, b in zip(clf.coefs_, clf.intercepts_)]

    return Trainer(
        epoch,
        weights,
        "sklearn default (Glorot uniform): W, b ~ U(-sqrt(6/(fan_in+fan_out)), +sqrt(6/(fan_in+fan_out)))",
        f"MLPClassifier(solver='sgd', alpha={2 * wl.l2 * wl.batch:g} (= 2*lambda*batch), momentum=0, "
        "learning_rate='constant'), one partial_fit per epoch, float32 kept; NO DROPOUT (not supported), "
        "NumPy/OpenBLAS matmuls",
    )


# --------------------------------------------------------------------------------------
# Stack 8: jnn.fit (the framework under test)
# --------------------------------------------------------------------------------------

CURRENT_PLAN: dict = {}  # workload name -> Plan (set by run_workload; jnn's weights() needs plan.epochs)
JNN_SINGLE: dict = {}  # workload name -> figures of one uninterrupted jnn.fit call of plan.epochs epochs


@register("jnn_fit", "jnn.fit")
def stack_jnn_fit(wl: Workload, seed: int) -> Trainer:
    import jnn

    n_used = wl.samples_per_epoch  # == n_train on the full run; --quick shortens "large" to a prefix
    ds = jnn.Dataset(wl.X[:n_used], wl.y[:n_used], wl.sizes[-1])

    def config(epochs: int) -> jnn.TrainConfig:
        return jnn.TrainConfig(
            optimizer="sgd",
            learning_rate=wl.lr,
            batch_size=wl.batch,
            early_stopping=None,
            val_fraction=0.0,
            drop_last=True,
            max_epochs=epochs,
            seed=seed,
        )

    def fit(epochs: int):
        net = jnn.MLP(sizes=wl.sizes, activation="relu", l2=wl.l2, include_bias=False, keep_prob=wl.keep,
                      dropout_mode="inverted")  # fmt: skip
        r = jnn.fit(ds, config(epochs), task=net, callbacks=[Progress(bar=False)])
        jax.block_until_ready(r.params)
        assert r.stopped_by == "max_epochs" and len(r.epoch_seconds) == epochs, (r.stopped_by, r.message)
        return r

    def epoch():  # harness's first (cold) epoch and untimed warm-up epochs: a whole fit call of 1 epoch
        fit(1)

    def turn(pre: int, block: int) -> float:
        # One fresh fit call per turn: epoch 1 (compile) and ``pre`` epochs untimed, then ``block``
        # timed epochs; the time is the mean of the last ``block`` entries of FitResult.epoch_seconds.
        r = fit(1 + pre + block)
        return sum(r.epoch_seconds[-block:]) / block

    def weights():
        # Final params of ONE uninterrupted fit call of the same number of epochs as every other stack.
        plan = CURRENT_PLAN[wl.name]
        t0 = time.perf_counter()
        r = fit(plan.epochs)
        wall = time.perf_counter() - t0
        es = list(r.epoch_seconds)
        JNN_SINGLE[wl.name] = {
            "epochs": plan.epochs,
            "first_epoch_s": es[0],
            "setup_s": r.setup_seconds,
            "wall_s": wall,
            "epoch_s_median_excl_first": statistics.median(es[1:]),
            "samples_per_s_median_excl_first": wl.samples_per_epoch / statistics.median(es[1:]),
            "epoch_seconds": es,
        }
        log(
            f"{wl.name}/jnn_fit single call of {plan.epochs} epochs: median epoch (excl. first) "
            f"{statistics.median(es[1:]) * 1e3:.1f} ms, first {es[0]:.2f} s, wall {wall:.2f} s"
        )
        return [(np.asarray(layer["w"]), np.asarray(layer["b"])) for layer in r.params]

    return Trainer(
        epoch,
        weights,
        "jnn default scheme 'lecun_normal' (jnn.init_mlp)",
        "jnn.fit(jnn.Dataset(X, y, classes), jnn.TrainConfig(optimizer='sgd', learning_rate, batch_size, "
        "early_stopping=None, val_fraction=0, drop_last=True, seed), task=jnn.MLP(sizes, relu, l2=1e-4, keep_prob=0.8 "
        "inverted), callbacks=[jnn.Progress(bar=False)]); "
        "other fields default (check_finite=True, threefry, epochs per call chosen for ~0.3 s a call); jnn.fit is not "
        "stepped epoch by epoch, so each timed turn is ONE fresh fit call of 1 + pre + block epochs (a fit after the "
        "first reuses the compiled program) whose last `block` FitResult.epoch_seconds are averaged (first epoch = a "
        "whole fit(max_epochs=1) call incl. setup + compile); final loss from one uninterrupted fit call of the same "
        "epoch count as the other stacks",
        turn=turn,
    )


# --------------------------------------------------------------------------------------
# Measurement helpers
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise TimeoutError if the block runs longer than ``seconds`` (main thread only)."""
    if not seconds:
        yield
        return

    def handler(signum, frame):
        raise TimeoutError(f"exceeded {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def quartiles(xs: list[float]) -> list[float]:
    q = np.quantile(np.asarray(xs), [0.25, 0.5, 0.75])
    return [float(v) for v in q]


def evaluate(weights: list[tuple[np.ndarray, np.ndarray]], wl: Workload) -> dict:
    """Shared evaluation: full training set, no dropout, CE + lambda * sum(W**2)."""
    h = wl.X
    for i, (W, b) in enumerate(weights):
        h = h @ W.astype(np.float32) + b.astype(np.float32)
        if i < len(weights) - 1:
            h = np.maximum(h, 0.0)
    z = h.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    ce = float(-logp[np.arange(len(wl.y)), wl.y].mean())
    l2 = float(sum(np.sum(W.astype(np.float64) ** 2) for W, _ in weights))
    acc = float((np.argmax(z, axis=1) == wl.y).mean())
    return {"final_loss": ce + wl.l2 * l2, "final_ce": ce, "final_l2_term": wl.l2 * l2, "final_train_acc": acc}


def measure_matmul_peak(n: int, reps: int, pause_s: float = 0.3) -> dict:
    """float32 GFLOP/s of an n x n x n product: jnp.dot (jitted, blocked), torch.mm (when PyTorch is
    installed), np.dot."""
    flop = 2.0 * n**3
    out: dict = {"n": n, "rounds": reps, "timed_calls_per_round": 2}
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    na, nb = np.array(a), np.array(b)
    nc = np.empty((n, n), np.float32)
    dot = jax.jit(jnp.dot)
    runs = {"jax": lambda: dot(a, b).block_until_ready(), "numpy": lambda: np.dot(na, nb, out=nc)}
    try:
        import torch
    except ImportError:  # PyTorch is optional: its stacks are then reported as failed
        torch = None
    if torch is not None:
        torch.set_num_threads(THREADS)
        ta, tb = torch.from_numpy(na), torch.from_numpy(nb)
        tc = torch.empty(n, n)
        runs["torch"] = lambda: torch.mm(ta, tb, out=tc)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for f in runs.values():  # warm-up (and jit compile)
        f()
    with frozen_heap():
        for _ in range(reps):  # interleaved rounds; each turn: settle, 1 untimed call, 2 timed calls
            for k, f in runs.items():
                settle(pause_s)
                f()
                for _ in range(2):
                    t0 = time.perf_counter()
                    f()
                    times[k].append(time.perf_counter() - t0)
    for k, ts in times.items():
        g = [flop / t / 1e9 for t in ts]
        out[k] = {"gflops_median": statistics.median(g), "gflops_max": max(g), "gflops_quartiles": quartiles(g)}
    out["peak_gflops"] = max(out[k]["gflops_median"] for k in ("jax", "torch") if k in out)
    out["peak_definition"] = "max of the medians of jnp.dot and torch.mm (np.dot reported for reference)"
    return out


OWN_PEAK = {"torch_eager": "torch", "torch_compile": "torch", "sklearn": "numpy"}  # others: "jax"


# --------------------------------------------------------------------------------------
# Harness
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Plan:
    """How one workload is timed.

    Every stack runs 1 first (compile) epoch + ``warmup`` epochs, then ``repeats``
    rounds; in each round the stacks take turns in a shuffled order, and each
    turn is: sleep ``pause_s`` (lets the previous stack's spin-waiting thread
    pools -- OpenBLAS, OpenMP, Eigen -- go idle), ``pre`` untimed epochs (wakes
    this stack's own threads and caches), then ``block`` timed epochs.
    """

    repeats: int  # timed rounds (medians are taken over these)
    block: int  # timed epochs per round
    warmup: int = 0  # untimed epochs after the first (compile) epoch
    pre: int = 0  # untimed epochs right before each timed block
    pause_s: float = 0.3  # idle time before each turn
    first_epoch_timeout: float = 300.0  # seconds; a stack whose first epoch runs longer is dropped

    @property
    def epochs(self) -> int:
        return 1 + self.warmup + self.repeats * (self.pre + self.block)


def settle(seconds: float) -> None:
    gc.collect()
    time.sleep(seconds)


@contextlib.contextmanager
def frozen_heap():
    """Move everything allocated so far (five frameworks' worth of modules and the
    trainers) out of the garbage collector's reach while timing: a full collection
    of this unusually large heap takes ~0.3 s, far more than in a process that
    imports a single framework, and would otherwise land inside timed epochs."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.collect()


def _timed_rounds(
    wl: Workload,
    live: dict[str, Trainer],
    results: dict[str, dict],
    plan: Plan,
    order_rng: np.random.Generator,
    rounds: list,
    orders: list,
) -> None:
    """The timed part of ``run_workload``: ``plan.repeats`` rounds over the live stacks."""
    for r in range(plan.repeats):
        times: dict[str, float] = {}
        orders.append(order_rng.permutation(list(live)).tolist())
        for name in orders[-1]:
            try:
                settle(plan.pause_s)
                if live[name].turn is not None:
                    times[name] = live[name].turn(plan.pre, plan.block)
                    continue
                for _ in range(plan.pre):
                    live[name].epoch()
                t0 = time.perf_counter()
                for _ in range(plan.block):
                    live[name].epoch()
                times[name] = (time.perf_counter() - t0) / plan.block
            except Exception as e:  # noqa: BLE001
                results[name].update(
                    status="failed",
                    error=f"{type(e).__name__}: {e}"[:3000],
                    traceback_tail=traceback.format_exc()[-3000:],
                )
                del live[name]
        rounds.append(times)
        log(f"{wl.name}: round {r + 1}/{plan.repeats} " + " ".join(f"{k}={v * 1e3:.1f}ms" for k, v in times.items()))


def run_workload(wl: Workload, names: list[str], plan: Plan, peak: dict, seed: int, ref: str) -> dict:
    results: dict[str, dict] = {}
    live: dict[str, Trainer] = {}
    CURRENT_PLAN[wl.name] = plan
    for name in names:
        st = STACKS[name]
        rec: dict = {"label": st.label, "status": "ok"}
        results[name] = rec
        try:
            t0 = time.perf_counter()
            tr = st.build(wl, seed)
            rec["build_s"] = time.perf_counter() - t0
            rec["init"], rec["notes"] = tr.init, tr.notes
            gc.collect()
            with time_limit(plan.first_epoch_timeout):
                t0 = time.perf_counter()
                tr.epoch()
                rec["first_epoch_s"] = time.perf_counter() - t0
            for _ in range(plan.warmup):
                tr.epoch()
            live[name] = tr
            log(f"{wl.name}/{name}: first epoch {rec['first_epoch_s']:.3f} s")
        except Exception as e:  # noqa: BLE001 -- a failing stack is reported, not fatal
            rec["status"] = "failed"
            rec["error"] = f"{type(e).__name__}: {e}"[:3000]
            rec["traceback_tail"] = traceback.format_exc()[-3000:]
            log(f"{wl.name}/{name}: FAILED {rec['error'][:300]}")

    # Timed rounds, stacks interleaved in a shuffled order so drift and noise are shared.
    rounds: list[dict[str, float]] = []
    orders: list[list[str]] = []
    order_rng = np.random.default_rng(seed)
    with frozen_heap():
        _timed_rounds(wl, live, results, plan, order_rng, rounds, orders)

    epochs_trained = plan.epochs
    for name, tr in live.items():
        rec = results[name]
        ts = [rd[name] for rd in rounds if name in rd]
        sps = [wl.samples_per_epoch / t for t in ts]
        med_t = statistics.median(ts)
        rec.update(
            epoch_s=ts,
            epoch_s_median=med_t,
            samples_per_s=statistics.median(sps),
            samples_per_s_quartiles=quartiles(sps),
            overhead_s=rec["first_epoch_s"] - med_t,
            epochs_trained=epochs_trained,
        )
        rec["gflops"] = rec["samples_per_s"] * wl.flops_per_sample / 1e9
        rec["frac_peak"] = rec["gflops"] / peak["peak_gflops"]
        own = OWN_PEAK.get(name, "jax")
        rec["frac_own_lib_peak"] = {"lib": own, "frac": rec["gflops"] / peak[own]["gflops_median"]}
        try:
            rec.update(evaluate(tr.weights(), wl))
        except Exception as e:  # noqa: BLE001
            rec["eval_error"] = f"{type(e).__name__}: {e}"
    # Same-run ratios: median over repeats of the per-repeat ratio.
    ok = [n for n in live if results[n]["status"] == "ok"]
    if ok:
        fastest = max(ok, key=lambda n: results[n]["samples_per_s"])
        for name in ok:
            for other, key in ((ref, f"speedup_vs_{ref}"), (fastest, "rel_to_fastest")):
                pairs = [rd[other] / rd[name] for rd in rounds if name in rd and other in rd]
                if pairs:
                    results[name][key] = statistics.median(pairs)
    else:
        fastest = None
    return {
        "config": wl.config(),
        "plan": dataclasses.asdict(plan),
        "epochs_trained": epochs_trained,
        "fastest": fastest,
        "reference": ref,
        "round_orders": orders,
        "rounds": rounds,
        "stacks": results,
    }


def run_sweep(wl: Workload, n_models: int, plan: Plan, peak: dict, seed: int) -> dict:
    """Train ``n_models`` independent small models: one after the other vs. one vmapped program."""
    opt, train_epoch = make_jax_epoch(wl)
    single = jax.jit(train_epoch, donate_argnums=(0, 1))
    batched = jax.jit(jax.vmap(train_epoch, in_axes=(0, 0, 0, None, None)), donate_argnums=(0, 1))
    X, y = jnp.asarray(wl.X), jnp.asarray(wl.y)

    def init(key):
        k_init, k_run = jax.random.split(key)
        params = jax_init_params(k_init, wl.sizes)
        return params, opt.init(params), k_run

    keys = jax.random.split(jax.random.key(seed + 1000), n_models)
    seq = [list(init(k)) for k in keys]
    vm = list(jax.vmap(init)(keys))

    def seq_epochs(n_epochs: int):
        for m in range(n_models):  # strictly one model after the other
            for _ in range(n_epochs):
                p, s, k, _ = single(*seq[m], X, y)
                seq[m] = [p, s, k]
            jax.block_until_ready(seq[m])

    def vmap_epochs(n_epochs: int):
        for _ in range(n_epochs):
            p, s, k, _ = batched(*vm, X, y)
            vm[:] = [p, s, k]
        jax.block_until_ready(vm)

    runs = {"sequential": seq_epochs, "vmap": vmap_epochs}
    out: dict = {"n_models": n_models, "stack": "jax_scan", "plan": dataclasses.asdict(plan), "config": wl.config()}
    for name, f in runs.items():
        t0 = time.perf_counter()
        f(1)
        out[name] = {"first_epoch_s": time.perf_counter() - t0}
        f(plan.warmup)
    rounds = []
    with frozen_heap():
        for r in range(plan.repeats):
            times = {}
            for name in list(runs) if r % 2 == 0 else list(runs)[::-1]:
                settle(plan.pause_s)
                runs[name](plan.pre)
                t0 = time.perf_counter()
                runs[name](plan.block)
                times[name] = (time.perf_counter() - t0) / plan.block
            rounds.append(times)
            log(f"sweep: round {r + 1}/{plan.repeats} " + " ".join(f"{k}={v * 1e3:.1f}ms" for k, v in times.items()))
    samples = n_models * wl.samples_per_epoch
    epochs = plan.epochs
    finals = {
        "sequential": [evaluate(_np_weights(s[0]), wl)["final_loss"] for s in seq],
        "vmap": [
            evaluate(_np_weights(jax.tree.map(lambda a, i=i: a[i], vm[0])), wl)["final_loss"] for i in range(n_models)
        ],
    }
    for name in runs:
        ts = [rd[name] for rd in rounds]
        sps = [samples / t for t in ts]
        o = out[name]
        o.update(
            epoch_s=ts,
            epoch_s_median=statistics.median(ts),
            samples_per_s=statistics.median(sps),
            samples_per_s_quartiles=quartiles(sps),
            epochs_trained=epochs,
            final_loss_median=statistics.median(finals[name]),
            final_loss_range=[min(finals[name]), max(finals[name])],
        )
        o["overhead_s"] = o["first_epoch_s"] - o["epoch_s_median"]
        o["gflops"] = o["samples_per_s"] * wl.flops_per_sample / 1e9
        o["frac_peak"] = o["gflops"] / peak["peak_gflops"]
    out["vmap_speedup"] = statistics.median(rd["sequential"] / rd["vmap"] for rd in rounds)
    out["max_abs_final_loss_diff_seq_vs_vmap"] = float(
        np.max(np.abs(np.array(finals["sequential"]) - np.array(finals["vmap"])))
    )
    out["notes"] = (
        "sequential: jit(train_epoch) called per model, each model's epochs then block before the next; "
        "vmap: jit(vmap(train_epoch)) over a leading seed axis (params, opt state, keys), data shared; "
        "samples/s counts all models; an epoch here is one epoch of every model"
    )
    return out


# --------------------------------------------------------------------------------------
# Environment, reporting, CLI
# --------------------------------------------------------------------------------------


def environment() -> dict:
    def ver(pkg):
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        import torch

        blas = "MKL" if torch.backends.mkl.is_available() else "?"
    except ImportError:
        blas = "PyTorch not installed"
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "versions": {
            p: ver(p)
            for p in ("jax", "jaxlib", "optax", "flax", "equinox", "torch", "scikit-learn", "numpy", "mnist1d", "jnn")
        },
        "torch_threads": THREADS,
        "torch_blas": blas,
        "env": {
            k: os.environ.get(k)
            for k in ("XLA_FLAGS", "JAX_PLATFORMS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        },
        "jax_devices": [str(d) for d in jax.devices()],
    }


def _fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def markdown(res: dict) -> str:
    env, peak = res["environment"], res["matmul_peak"]
    L = [
        f"# Peer stacks: CPU training throughput{' (QUICK run)' if res['quick'] else ''}",
        "",
        f"Generated by `peers.py` on {res['started']} ({res['total_s']:.0f} s total). "
        f"CPU: {env['cpu']}, {env['cpu_count']} cores.",
        "",
        "## Matmul peak (float32, 2048^3, median of repeats)",
        "",
        "| library | GFLOP/s (median) | max |",
        "|---|---:|---:|",
    ]
    for k in ("jax", "torch", "numpy"):
        if k in peak:
            L.append(f"| {k} | {peak[k]['gflops_median']:.1f} | {peak[k]['gflops_max']:.1f} |")
    L += [
        "",
        f"Peak used for fractions: {peak['peak_gflops']:.1f} GFLOP/s ({peak['peak_definition']}). "
        "GFLOP/s below count 6 FLOPs per weight per sample (the usual convention); the matmul work "
        "actually needed is 14% lower on `large` and 9% lower on `small` (no first-layer input gradient), "
        "so a fraction above 1 is possible.",
        "",
    ]
    for wname, w in res["workloads"].items():
        c = w["config"]
        L += [
            f"## Workload `{wname}`: {'-'.join(map(str, c['sizes']))}, batch {c['batch']}, lr {c['lr']}, "
            f"dropout rate {c['dropout_rate']:g}, {c['steps_per_epoch']} steps/epoch",
            "",
            f"Timed: {w['plan']['repeats']} rounds x {w['plan']['block']} epoch(s), stacks interleaved in shuffled "
            f"order, each turn after a {w['plan']['pause_s']} s pause and {w['plan']['pre']} untimed epoch(s); "
            f"final loss after {w['epochs_trained']} epochs (shared NumPy evaluation, dropout off). "
            f"{c['flops_per_sample'] / 1e6:.3f} MFLOP/sample. 'vs {w['reference']}' is the median of "
            "same-round time ratios; 'overhead' is first epoch minus median epoch (negative = noise).",
            "",
            f"| stack | samples/s (median) | IQR | GFLOP/s | frac. of peak | vs {w['reference']} | "
            "first epoch (s) | compile/warm-up overhead (s) | final loss | train acc |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        ref_key = f"speedup_vs_{w['reference']}"
        for name, r in w["stacks"].items():
            if r["status"] != "ok":
                L.append(f"| {r['label']} | FAILED | | | | | | | | |")
                continue
            q = r["samples_per_s_quartiles"]
            L.append(
                f"| {r['label']} | {r['samples_per_s']:,.0f} | {q[0]:,.0f}-{q[2]:,.0f} | {r['gflops']:.1f} | "
                f"{r['frac_peak']:.3f} | {_fmt(r.get(ref_key), '.2f')}x | "
                f"{r['first_epoch_s']:.2f} | {r['overhead_s']:.2f} | {_fmt(r.get('final_loss'), '.4f')} | "
                f"{_fmt(r.get('final_train_acc'), '.3f')} |"
            )
        jr = w["stacks"].get("jnn_fit")
        if jr is not None and jr["status"] == "ok":
            L += [
                "",
                "jnn.fit vs each peer (median over rounds of peer epoch time / jnn.fit epoch time, same round; "
                ">1 = jnn.fit faster):",
                "",
                "| peer | jnn.fit speed ratio | rounds |",
                "|---|---:|---:|",
            ]
            for other, r in w["stacks"].items():
                if other == "jnn_fit" or r["status"] != "ok":
                    continue
                pairs = [rd[other] / rd["jnn_fit"] for rd in w["rounds"] if other in rd and "jnn_fit" in rd]
                if pairs:
                    L.append(f"| {r['label']} | {statistics.median(pairs):.2f}x | {len(pairs)} |")
            sc = res.get("jnn_fit_single_call", {}).get(wname)
            if sc:
                L += [
                    "",
                    f"jnn.fit, one uninterrupted call of {sc['epochs']} epochs (after the rounds, not interleaved): "
                    f"median epoch excl. the first {sc['epoch_s_median_excl_first'] * 1e3:.1f} ms = "
                    f"{sc['samples_per_s_median_excl_first']:,.0f} samples/s; first epoch {sc['first_epoch_s']:.2f} s; "
                    f"setup {sc['setup_s']:.2f} s.",
                ]
        failed = {n: r for n, r in w["stacks"].items() if r["status"] != "ok"}
        for n, r in failed.items():
            L.append(f"\n`{n}` failed: `{r.get('error', '')[:400]}`")
        L.append("")
    if "sweep" in res:
        s = res["sweep"]
        L += [
            f"## Sweep: {s['n_models']} small models (different seeds), stack `{s['stack']}`",
            "",
            "| mode | total samples/s | GFLOP/s | frac. of peak | first epoch (s) | final loss (median over models) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for m in ("sequential", "vmap"):
            o = s[m]
            L.append(
                f"| {m} | {o['samples_per_s']:,.0f} | {o['gflops']:.2f} | {o['frac_peak']:.4f} | "
                f"{o['first_epoch_s']:.2f} | {o['final_loss_median']:.4f} |"
            )
        L += [
            "",
            f"vmap / sequential (median of same-round ratios): {s['vmap_speedup']:.2f}x; "
            f"max |final loss diff| between the two modes: {s['max_abs_final_loss_diff_seq_vs_vmap']:.2e}.",
            "",
        ]
    L += ["## Stacks: initialisation and notes", ""]
    seen = set()
    for w in res["workloads"].values():
        for name, r in w["stacks"].items():
            if name in seen or "init" not in r:
                continue
            seen.add(name)
            L.append(f"- **{r['label']}** (`{name}`): init: {r['init']}. {r['notes']}.")
    L += ["", "## Software", ""]
    L += [f"- {k} {v}" for k, v in env["versions"].items()]
    this = "python " + " ".join(res["argv"])
    commands = {
        "python benchmarks/peers.py --out runs/bench_peers/results.json --md runs/bench_peers/RESULTS.md": "full run (~5 min)",
        "python benchmarks/peers.py --out runs/bench_peers/nodropout.json --md runs/bench_peers/NODROPOUT.md "
        "--workloads large,small "
        "--drop-rate 0": "side run: dropout off",
        "python benchmarks/peers.py --out /tmp/quick.json --quick": "< 90 s smoke run",
    }
    L += [
        f"- Python {env['python']}, {env['platform']}; torch threads {env['torch_threads']} ({env['torch_blas']}); "
        f"XLA_FLAGS={env['env']['XLA_FLAGS']}",
        "",
        "## Reproduce",
        "",
        f"This report came from `{this}`.",
        "",
        "```",
        "# in a venv that has the stacks installed (pip install -e '.[bench]'), from the repository root",
    ]
    L += [f"{cmd}   # {what}" for cmd, what in commands.items()]
    L += ["```", ""]
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", required=True, help="JSON results file")
    ap.add_argument("--md", help="also write a Markdown report here")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (< 90 s): 8-step epochs on 'large', few repeats, 8-model sweep, no torch.compile",
    )
    ap.add_argument("--stacks", help=f"comma-separated subset of: {','.join(STACKS)}")
    ap.add_argument("--workloads", default="large,small,sweep", help="comma-separated subset of large,small,sweep")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", default="torch_eager", help="stack that speed ratios are relative to")
    ap.add_argument(
        "--drop-rate",
        type=float,
        default=None,
        help="override the dropout rate of every workload (default: the spec's 0.2); "
        "0 turns dropout off in every stack, to see what the dropout RNG costs",
    )
    args = ap.parse_args(argv)

    warnings.filterwarnings("ignore", message=".*donated buffers.*")
    names = args.stacks.split(",") if args.stacks else [n for n, s in STACKS.items() if s.in_quick or not args.quick]
    unknown = [n for n in names if n not in STACKS]
    if unknown:
        ap.error(f"unknown stacks {unknown}; known: {list(STACKS)}")
    workloads = args.workloads.split(",")
    ref = args.reference if args.reference in names else names[0]
    q = args.quick
    plans = {
        "large": Plan(repeats=3, block=1, pause_s=0.2) if q else Plan(repeats=9, block=1, warmup=1),
        "small": Plan(repeats=3, block=3, warmup=1, pre=1, pause_s=0.2)
        if q
        else Plan(repeats=11, block=10, warmup=2, pre=1),
        "sweep": Plan(repeats=3, block=1, warmup=1, pause_s=0.2) if q else Plan(repeats=7, block=3, warmup=1, pre=1),
    }

    t_start = time.perf_counter()
    res: dict = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "quick": q,
        "argv": sys.argv,
        "stacks_requested": names,
        "environment": environment(),
        "workloads": {},
    }
    log("matmul peak ...")
    res["matmul_peak"] = measure_matmul_peak(2048, 2 if q else 8)
    log("peak: " + "  ".join(f"{k} {v['gflops_median']:.1f}" for k, v in res["matmul_peak"].items()
                             if isinstance(v, dict)) + " GFLOP/s")  # fmt: skip
    small = None
    for wname in ("large", "small"):
        if wname in workloads:
            wl = WORKLOADS[wname](q)
            if args.drop_rate is not None:
                wl.keep = 1.0 - args.drop_rate
            small = wl if wname == "small" else small
            res["workloads"][wname] = run_workload(wl, names, plans[wname], res["matmul_peak"], args.seed, ref)
    if "sweep" in workloads:
        if small is None:
            small = make_small(q)
            if args.drop_rate is not None:
                small.keep = 1.0 - args.drop_rate
        res["sweep"] = run_sweep(small, 8 if q else 32, plans["sweep"], res["matmul_peak"], args.seed)
    res["total_s"] = time.perf_counter() - t_start
    res["jnn_fit_single_call"] = JNN_SINGLE

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    md = markdown(res)
    if args.md:
        os.makedirs(os.path.dirname(os.path.abspath(args.md)), exist_ok=True)
        with open(args.md, "w") as f:
            f.write(md)
    print(md)
    log(f"done in {res['total_s']:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
