"""The lecture's node-level backpropagation, literally: one node per scalar, plain Python and NumPy.

This is the teaching reference, meant to be read beside the lecture. It is slow (one Python object per
unit per example) and meant for small networks (a few hundred weights).

Forward pass: "calculate the value of each node given an input at θ". Every unit is a node

    u_i = f_i · g(w_1i z_1 + w_2i z_2 + … + b_i)

(f_i: dropout multiplier, 1 without dropout; g = identity at the output layer, whose nodes are the
logits). Each node records its successors T(u) together with the local derivatives ∂v/∂u, e.g.
∂u/∂w_ji = f_i g′ z_j,  ∂u/∂z_j = f_i g′ w_ji,  ∂u/∂b_i = f_i g′.

Backward pass: base case ∂L/∂L = 1; then, in reverse topological order, for every node u

    ∂L/∂u = Σ_{v ∈ T(u)} ∂L/∂v · ∂v/∂u,

which for a weight is ∂L/∂w = ∂L/∂u · ∂u/∂w. The loss node is the batch mean of the per-example
cross-entropies plus the L2 node λΣw², so weights are shared by the graphs of all examples: their
successors are units in every example's graph and the L2 node.
"""

from __future__ import annotations

import math

import numpy as np

from jnn.activations import get_activation
from jnn.dropout import Dropout
from jnn.losses import DEFAULT_LOSS, check_objective_args, get_loss
from jnn.types import ArrayLike, PRNGKey, PyTree

#: Refuse networks larger than this many parameters (the graph has one Python object per scalar).
MAX_PARAMS = 20_000


class Node:
    """A scalar node of the computational graph.

    Attributes:
        value: the value computed by the forward pass.
        grad: ∂L/∂(this node), filled by ``Graph.backward``.
        successors: list of ``(v, ∂v/∂u)`` for every v ∈ T(u) (nodes that take this one as input).
        label: a readable name, e.g. ``"u[1][0,3]"`` (layer 1, example 0, unit 3).
    """

    __slots__ = ("value", "grad", "successors", "label")

    def __init__(self, value: float, label: str):
        self.value = float(value)
        self.grad = 0.0
        self.successors: list[tuple[Node, float]] = []
        self.label = label

    def __repr__(self) -> str:
        return f"Node({self.label}={self.value:.6g}, grad={self.grad:.6g})"


class Graph:
    """Nodes in creation order, which is a topological order: a node is created after its inputs."""

    def __init__(self):
        self.nodes: list[Node] = []

    def leaf(self, value: float, label: str) -> Node:
        """A node with no inputs (a weight, bias or input feature)."""
        node = Node(value, label)
        self.nodes.append(node)
        return node

    def node(self, value: float, label: str, inputs: list[tuple[Node, float]]) -> Node:
        """A node computed from ``inputs``, given as ``(u, ∂self/∂u)``; registers self in each T(u)."""
        node = Node(value, label)
        for u, local in inputs:
            u.successors.append((node, float(local)))
        self.nodes.append(node)
        return node

    def backward(self, loss: Node) -> None:
        """Fill every node's grad: ∂L/∂L = 1, then ∂L/∂u = Σ_{v∈T(u)} ∂L/∂v · ∂v/∂u in reverse order."""
        for u in reversed(self.nodes):
            if u is loss:
                u.grad = 1.0
            else:
                u.grad = sum(v.grad * dv_du for v, dv_du in u.successors)


def _to_np(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def node_backprop(
    params: PyTree,
    x: ArrayLike,
    y: ArrayLike,
    *,
    loss: str = DEFAULT_LOSS,
    activation: str = "relu",
    l2: float = 0.0,
    include_bias: bool = False,
    l2_mask: PyTree | None = None,
    dropout: Dropout | None = None,
    key: PRNGKey | None = None,
    train: bool = False,
    mask: ArrayLike | None = None,
    return_graph: bool = False,
):
    """Gradient of ``jnn.regularized_loss`` by the node-level algorithm, in float64.

    Arguments are those of ``jnn.regularized_loss``; the dropout masks are the ones
    ``jnn.forward`` draws with the same key.

    Returns:
        ``grads``: a list of ``{"w": np.ndarray, "b": np.ndarray}`` in float64, or ``(grads, graph,
        loss_node)`` when ``return_graph``.

    Raises:
        ValueError: if the network has more than ``MAX_PARAMS`` parameters, or on bad arguments.
    """
    x, y, mask, lam, sel = check_objective_args(params, x, y, loss=loss, activation=activation, l2=l2,
                                                include_bias=include_bias, l2_mask=l2_mask, dropout=dropout,
                                                key=key, train=train, mask=mask)  # fmt: skip
    n_params = sum(int(np.size(l["w"]) + np.size(l["b"])) for l in params)
    if n_params > MAX_PARAMS:
        raise ValueError(
            f"node_backprop builds one Python object per scalar and is for small networks: at most "
            f"{MAX_PARAMS} parameters; got {n_params}. Use jnn.backprop.backprop instead"
        )

    W = [_to_np(l["w"]) for l in params]
    B = [_to_np(l["b"]) for l in params]
    xs = _to_np(x)
    batch = xs.shape[0]
    L = len(params)
    factors = _dropout_factors(dropout, key, train, xs, W, x.dtype)
    ex_mask = np.ones(batch) if mask is None else _to_np(mask)

    g = Graph()
    # θ: one leaf node per weight and bias.
    wn = [
        [[g.leaf(W[k][j, i], f"w[{k}][{j},{i}]") for i in range(W[k].shape[1])] for j in range(W[k].shape[0])]
        for k in range(L)
    ]
    bn = [[g.leaf(B[k][i], f"b[{k}][{i}]") for i in range(B[k].shape[0])] for k in range(L)]
    act = get_activation(activation)
    example_losses = [
        _loss_node(
            g, loss, _forward_nodes(g, act, wn, bn, xs[n], [None if f is None else f[n] for f in factors], n), y, n
        )
        for n in range(batch)
    ]

    L_node = _objective_node(g, wn, bn, sel, lam, example_losses, ex_mask)
    g.backward(L_node)
    grads = [
        {"w": np.array([[u.grad for u in row] for row in wn[k]]), "b": np.array([u.grad for u in bn[k]])}
        for k in range(L)
    ]
    return (grads, g, L_node) if return_graph else grads


def _objective_node(g: Graph, wn, bn, sel, lam: float, example_losses: list[Node], ex_mask) -> Node:
    """The node L = Σ_n m_n l_n / Σm + λ Σ w² (the penalty over the leaves ``sel`` marks)."""
    total = max(ex_mask.sum(), 1.0)
    weight_leaves = [(u, sel[k]["w"]) for k in range(len(wn)) for row in wn[k] for u in row]
    weight_leaves += [(u, sel[k]["b"]) for k in range(len(bn)) for u in bn[k]]
    penalised = [u for u, s in weight_leaves if s]
    reg = g.node(
        lam * sum(u.value**2 for u in penalised), "lambda*sum(w^2)", [(u, 2.0 * lam * u.value) for u in penalised]
    )
    data = sum(ex_mask[n] * l.value for n, l in enumerate(example_losses)) / total
    return g.node(data + reg.value, "L", [(l, ex_mask[n] / total) for n, l in enumerate(example_losses)] + [(reg, 1.0)])


def _dropout_factors(dropout, key, train, xs, W, dtype) -> list:
    """The dropout multipliers f of every layer (``[batch, width]`` or None), drawn as jnn.forward draws them."""
    batch, factors = xs.shape[0], [None] * len(W)
    if dropout is not None:
        for k in range(len(W)):
            if dropout.applies_to(k):
                width = xs.shape[1] if k == 0 else W[k - 1].shape[1]
                f = dropout.factor(key, k, (batch, width), dtype, train=train)
                factors[k] = np.broadcast_to(_to_np(f), (batch, width))
    return factors


def _forward_nodes(g: Graph, act, wn, bn, x_row, f_row, n: int) -> list[Node]:
    """Stage one for example ``n``: one node per unit u = f·g(Σ_j w_ji z_j + b_i), with its local
    derivatives ∂u/∂z_j, ∂u/∂w_ji, ∂u/∂b_i. Returns the logit nodes."""
    f0 = f_row[0]
    # Inputs are constants; with input dropout their value is x·f.
    z = [g.leaf(x_row[j] * (1.0 if f0 is None else f0[j]), f"x[{n},{j}]") for j in range(len(x_row))]
    L = len(wn)
    for k in range(L):
        last = k == L - 1
        layer = []
        for i in range(len(bn[k])):
            s = sum(wn[k][j][i].value * z[j].value for j in range(len(z))) + bn[k][i].value
            f = 1.0 if last or f_row[k + 1] is None else float(f_row[k + 1][i])
            if last:
                a, gp = s, 1.0  # logits: no activation
            else:
                a = float(act.fn(np.float64(s)))
                gp = float(act.deriv(np.float64(s), np.float64(a)))
            inputs = [(z[j], f * gp * wn[k][j][i].value) for j in range(len(z))]  # ∂u/∂z_j
            inputs += [(wn[k][j][i], f * gp * z[j].value) for j in range(len(z))]  # ∂u/∂w_ji
            inputs.append((bn[k][i], f * gp))  # ∂u/∂b_i
            layer.append(g.node(f * a, f"u[{k}][{n},{i}]", inputs))
        z = layer
    return z


def _loss_node(g: Graph, loss: str, logits: list[Node], y, n: int) -> Node:
    """The per-example loss node, through the output probability nodes ŷ (lecture, eq. (a), (b))."""
    yn = np.asarray(y)
    if get_loss(loss).output_activation == "sigmoid":  # the lecture's one sigmoid output
        z = logits[0]
        yhat_v = 0.5 * (1.0 + math.tanh(0.5 * z.value))
        yhat = g.node(yhat_v, f"yhat[{n}]", [(z, yhat_v * (1.0 - yhat_v))])  # (b) ∂ŷ/∂z = ŷ(1−ŷ)
        t = float(yn.reshape(-1)[n])
        value = -(t * math.log(yhat_v) + (1.0 - t) * math.log(1.0 - yhat_v))
        return g.node(value, f"l[{n}]", [(yhat, -t / yhat_v + (1.0 - t) / (1.0 - yhat_v))])  # (a)
    zs = np.array([u.value for u in logits])
    p = np.exp(zs - zs.max())
    p /= p.sum()
    t = np.eye(len(logits))[int(yn[n])] if np.issubdtype(yn.dtype, np.integer) else yn[n].astype(np.float64)
    # ŷ_c = softmax(z)_c with ∂ŷ_c/∂z_j = ŷ_c(1[c=j] − ŷ_j); l = −Σ_c y_c log ŷ_c with ∂l/∂ŷ_c = −y_c/ŷ_c.
    yhat = [
        g.node(
            p[c], f"yhat[{n}][{c}]", [(logits[j], p[c] * ((1.0 if c == j else 0.0) - p[j])) for j in range(len(logits))]
        )
        for c in range(len(logits))
    ]
    value = -float(sum(t[c] * math.log(p[c]) for c in range(len(p)) if t[c] != 0))
    return g.node(value, f"l[{n}]", [(yhat[c], -t[c] / p[c]) for c in range(len(p))])
