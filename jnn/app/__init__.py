"""The application wing: what turns the engine into a tool, on top of the core (which never imports it).

- :mod:`jnn.app.cli`: the ``jnn`` command (train, sweep, launch, predict, evaluate, plot, gradcheck);
- :mod:`jnn.app.tabular` and :mod:`jnn.app.sources`: CSV/npz readers, label encoding, standardisation, and
  a run's data source;
- :mod:`jnn.app.trained`: :func:`jnn.load_run` and :class:`jnn.TrainedModel` (a run folder's model, for
  new inputs);
- :mod:`jnn.app.launcher`: ``jnn launch``, N local processes wired through ``jax.distributed``.

``tests/test_layers.py`` checks that no core module imports ``jnn.app``.
"""
