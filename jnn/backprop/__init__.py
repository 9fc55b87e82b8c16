"""Hand-written backpropagation, the reference ``jax.grad`` is checked against.

- ``backprop`` (``vectorized.py``): the two-stage algorithm in δ form, jit-able.
- ``node_backprop`` (``nodes.py``): the node-level algorithm with T(u) sums, for teaching.
"""

from jnn.backprop.nodes import Graph, Node, node_backprop
from jnn.backprop.vectorized import BackpropCache, backprop, lecture_output_delta, output_delta

__all__ = ["backprop", "node_backprop", "BackpropCache", "Graph", "Node", "output_delta", "lecture_output_delta"]
