"""The application wing: what turns the engine into a tool, on top of the core (which never imports it).

- :mod:`jnn.app.cli`: the ``jnn`` command (train, sweep, launch, predict, evaluate, plot, gradcheck);
- :mod:`jnn.app.tabular` and :mod:`jnn.app.sources`: CSV/npz readers, label encoding, standardisation, and
  a run's data source;
- :mod:`jnn.app.trained`: :func:`jnn.load_run` and :class:`jnn.TrainedModel` (a run folder's model, for
  new inputs);
- :mod:`jnn.app.launcher`: ``jnn launch``, N local processes wired through ``jax.distributed``;
- :mod:`jnn.app.run_folder` (:class:`jnn.RunFolder`, the built-in :class:`jnn.train.callbacks.RunStore`),
  :mod:`jnn.app.run_dir` (the folder's files: config, checkpoints, model, summary, resume),
  :mod:`jnn.app.live_history` and :mod:`jnn.app.history_files` (``history.csv``/``.json``, TensorBoard),
  :mod:`jnn.app.sweep_files` (:func:`jnn.save_sweep`), :mod:`jnn.app.plots`;
- :mod:`jnn.app.checkpoint` (checksummed ``.npz`` pytrees), :mod:`jnn.app.atomic` (writes never through
  links), :mod:`jnn.app.lock` (one run per folder);
- :mod:`jnn.app.loggers`: :class:`jnn.CSVLogger` and :class:`jnn.MLflowLogger`.

``import jnn`` loads none of these: the names above are resolved on first use (``jnn/__init__.py``).

``tests/test_layers.py`` checks that no core module imports ``jnn.app``.
"""
