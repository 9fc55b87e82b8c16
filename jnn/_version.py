"""The package version, in one place: ``pyproject.toml`` reads it, and modules import it from here (not from
the ``jnn`` package, which would import every module of the package first)."""

__version__ = "0.1.0"
