"""The application wing: what turns the engine into a tool, on top of the core (which never imports it).

- ``jnn.app.cli``: the ``jnn`` command (train, sweep, launch, predict, evaluate, plot, gradcheck);
- ``jnn.app.tabular`` and ``jnn.app.sources``: CSV/npz readers, label encoding, standardisation, and
  a run's data source;
- ``jnn.app.trained``: ``jnn.load_run`` and ``jnn.TrainedModel`` (a run folder's model, for
  new inputs);
- ``jnn.app.launcher``: ``jnn launch``, N local processes wired through ``jax.distributed``;
- ``jnn.app.run_folder`` (``jnn.RunFolder``, the built-in ``jnn.train.callbacks.RunStore``),
  ``jnn.app.run_dir`` (the folder's files: config, checkpoints, model, summary, resume),
  ``jnn.app.live_history`` and ``jnn.app.history_files`` (``history.csv``/``.json``, TensorBoard),
  ``jnn.app.sweep_files`` (``jnn.save_sweep``), ``jnn.app.plots``;
- ``jnn.app.checkpoint`` (checksummed ``.npz`` pytrees), ``jnn.app.atomic`` (writes never through
  links), ``jnn.app.lock`` (one run per folder);
- ``jnn.app.loggers``: ``jnn.CSVLogger`` and ``jnn.MLflowLogger``.

``import jnn`` loads none of these: the names above are resolved on first use (``jnn/__init__.py``).

``tests/test_layers.py`` checks that no core module imports ``jnn.app``.
"""
