"""Gradient checking, one concept: ``check_grads`` verifies the derivatives of any JAX function against
float64 finite differences and returns a ``CheckReport`` whose verdict is ``"passed"``, ``"failed"`` or
``"inconclusive"``; ``compare_grads`` compares two given gradients into the same report type;
``taylor_test`` and ``finite_difference_grad`` are the small tools beside them.

Modules: ``jnn.gradcheck.report`` (the report types and what a verdict means),
``jnn.gradcheck.check`` (``check_grads``), ``jnn.gradcheck.probes`` (how one probe is judged: the
reference, its error bound, kinks and retries), ``jnn.gradcheck.jaxpr`` (reading f's jaxpr: precision,
float64 twin, first non-finite equation), ``jnn.gradcheck.operations`` (naming the wrong operation),
``jnn.gradcheck.simple`` (compare_grads, finite differences, the Taylor test, float64_mode).
"""

from jnn.gradcheck.check import AUTO_FULL_MAX, FAST_DIRECTIONS, check_grads
from jnn.gradcheck.report import POWER, CheckReport, LeafCheck, OpCheck
from jnn.gradcheck.simple import TaylorResult, compare_grads, finite_difference_grad, float64_mode, taylor_test

__all__ = [
    "AUTO_FULL_MAX",
    "FAST_DIRECTIONS",
    "POWER",
    "CheckReport",
    "LeafCheck",
    "OpCheck",
    "TaylorResult",
    "check_grads",
    "compare_grads",
    "finite_difference_grad",
    "float64_mode",
    "taylor_test",
]
