"""Helpers for users' own test suites."""

from __future__ import annotations

from jnn.gradcheck import check_grads


def assert_grads(f, *args, **kwargs):
    """Assert that the derivatives of ``f`` are right: ``jnn.check_grads`` with the same arguments and
    keywords, raising ``AssertionError`` with the report's table when it fails.

    Example:
        >>> def test_my_layer():
        ...     jnn.testing.assert_grads(my_loss, params, x, argnums=(0, 1))

    Returns:
        The ``jnn.CheckReport`` (passed).
    """
    report = check_grads(f, *args, **kwargs)
    if not report.passed:
        raise AssertionError(("wrong derivatives:\n" if report.wrong else "inconclusive check:\n") + str(report))
    return report


__all__ = ["assert_grads"]
