"""Models of the JAX ecosystem as ``jnn.Task`` objects: Equinox modules and Flax NNX modules.

Both adapters split the module into its float arrays (the params the engine trains, checkpoints and sweeps) and
the rest (structure, static fields, RNG state), and rebuild it inside ``apply``. The engine's step key reaches the
module's randomness (dropout), so each step draws new masks and a seed sweep varies them:

- Equinox (``pip install equinox``): an ``eqx.Module`` called on one example (``model(x, key=...)``) is vmapped
  over the batch with one key per example (``batched=True`` for a model that takes the whole batch); training
  and evaluation switch with ``eqx.nn.inference_mode``.
- Flax NNX (``pip install flax``): the module's ``Rngs`` streams are reseeded from the step key
  (``nnx.reseed``, one key per stream: ``fold_in(key, i)``), then ``module.train()`` / ``module.eval()``.
  Modules with batch statistics (``nnx.BatchNorm``) are refused: the engine keeps params only.

Either adapter takes a built module (its params are the initial params whatever the seed) or a function
``make(key) -> module`` (the initial params come from the run's seed, as the built-in MLP's do). Errors that the
user's framework raises while jnn traces a piece are reported naming the piece (``jnn.task.check_task``).
``jnn.Task.from_equinox`` and ``jnn.Task.from_nnx`` build the task; this module gives them its
``(init, apply)`` and never imports ``jnn.task``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax


def _hyper_setter(set_hyper, hyper):
    if set_hyper is not None and not callable(set_hyper):
        raise TypeError(f"set_hyper must be a function (module, hyper) -> module or None; got {set_hyper!r}")
    if set_hyper is None and hyper:
        raise ValueError(f"hyper {sorted(hyper)} needs set_hyper to put the values into the module")


def equinox_functions(model: Any, *, hyper: Mapping[str, float] | None = None, set_hyper: Callable | None = None,
                      batched: bool = False) -> tuple[Callable, Callable]:  # fmt: skip
    """The ``(init, apply)`` of a ``jnn.Task`` training an Equinox module (see the module docstring);
    ``jnn.Task.from_equinox`` builds the task from them.

    Args:
        model: an ``eqx.Module``, or ``make(key) -> eqx.Module`` (the params then come from the run's seed).
        hyper: ``{name: default}`` hyperparameters (sweepable); ``set_hyper(module, hyper) -> module`` puts the
            values (scalar arrays) into the module, e.g. ``lambda m, h: eqx.tree_at(lambda m: m.drop.p, m,
            h["p"])``.
        batched: the module takes the whole batch ``[batch, d_in]`` (and one key); default False: it takes one
            example and is vmapped.

    Returns:
        ``(init(key) -> params, apply(params, x, *, key, train, hyper) -> outputs)``.

    Raises:
        ImportError: Equinox is not installed.
        TypeError, ValueError: a bad argument (named).
    """
    import equinox as eqx

    _hyper_setter(set_hyper, hyper)
    make = model if callable(model) and not isinstance(model, eqx.Module) else None
    if make is None and not isinstance(model, eqx.Module):
        raise TypeError(f"model must be an equinox.Module or a function key -> Module; got {type(model).__name__}")
    if not isinstance(batched, bool):
        raise TypeError(f"batched must be True or False; got {batched!r}")
    template = make(jax.random.key(0)) if make is not None else model
    params0, static = eqx.partition(template, eqx.is_inexact_array)
    takes_key = "key" in inspect.signature(type(template).__call__).parameters

    def init(key):
        return eqx.partition(make(key), eqx.is_inexact_array)[0] if make is not None else params0

    def apply(params, x, *, key, train, hyper):
        m = eqx.combine(params, static)
        if set_hyper is not None:
            m = set_hyper(m, hyper)
        m = eqx.nn.inference_mode(m, value=not train)
        use_key = takes_key and train and key is not None
        if batched:
            return m(x, key=key) if use_key else m(x)
        if not use_key:
            return jax.vmap(m)(x)
        return jax.vmap(lambda xi, ki: m(xi, key=ki))(x, jax.random.split(key, x.shape[0]))

    return init, apply


def nnx_functions(module: Any, *, hyper: Mapping[str, float] | None = None,
                  set_hyper: Callable | None = None) -> tuple[Callable, Callable]:  # fmt: skip
    """The ``(init, apply)`` of a ``jnn.Task`` training a Flax NNX module (see the module docstring);
    ``jnn.Task.from_nnx`` builds the task from them.

    Args:
        module: an ``nnx.Module`` taking the batch ``[batch, d_in]``, or ``make(key) -> nnx.Module`` (built with
            ``nnx.Rngs(key)``: the params then come from the run's seed).
        hyper: ``{name: default}`` hyperparameters (sweepable); ``set_hyper(module, hyper) -> module`` puts the
            values (scalar arrays) into the module, e.g. ``def f(m, h): m.drop.rate = h["rate"]; return m``.

    Returns:
        ``(init(key) -> params, apply(params, x, *, key, train, hyper) -> outputs)``.

    Raises:
        ImportError: Flax is not installed.
        TypeError, ValueError: a bad argument, or a module with batch statistics (named).
    """
    from flax import nnx

    _hyper_setter(set_hyper, hyper)
    make = module if callable(module) and not isinstance(module, nnx.Module) else None
    if make is None and not isinstance(module, nnx.Module):
        raise TypeError(f"module must be a flax.nnx.Module or a function key -> Module; got {type(module).__name__}")
    template = make(jax.random.key(0)) if make is not None else module
    stats = nnx.state(template, nnx.BatchStat)
    if jax.tree.leaves(stats):
        raise ValueError("module holds batch statistics (nnx.BatchStat, e.g. nnx.BatchNorm): jnn trains params "
                         "only and would never update them; use nnx.LayerNorm or a module without running "
                         "statistics")  # fmt: skip
    graphdef, params0, rest = nnx.split(template, nnx.Param, ...)
    streams = sorted({s.tag for _, s in nnx.iter_graph(template) if isinstance(s, nnx.RngStream)})

    def init(key):
        return nnx.split(make(key), nnx.Param, ...)[1] if make is not None else params0

    def apply(params, x, *, key, train, hyper):
        # A copy of the RNG state made here: merging the state built outside the trace would let dropout mutate
        # variables of another trace level (Flax's TraceContextError).
        m = nnx.merge(graphdef, params, jax.tree.map(lambda a: a, rest))
        if set_hyper is not None:
            m = set_hyper(m, hyper)
        if train and key is not None and streams:
            nnx.reseed(m, **{tag: jax.random.fold_in(key, i) for i, tag in enumerate(streams)})
        m.train() if train else m.eval()
        return m(x)

    return init, apply


__all__ = ["equinox_functions", "nnx_functions"]
