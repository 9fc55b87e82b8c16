"""The one report type of gradient checking: ``CheckReport``, its rows ``LeafCheck`` and the
operations it checked, ``OpCheck``.

A verdict is one of three words:

- ``"passed"``: every checked entry agrees with the float64 reference within its tolerance, and the
  check had the power to see a 5 % error (``POWER``) in every leaf;
- ``"failed"``: some entry, leaf or operation is wrong, or something that makes a check meaningless
  happened (a non-finite value of ``f``, of the reference or of the candidate): ``CheckReport.problems``
  says what and where;
- ``"inconclusive"``: nothing was found wrong, but the tolerances would let a ×1.05 error through (low
  precision), or every probe of some leaf met a kink it could not be judged beside: a pass here would
  promise nothing.

Kinks never decide a verdict. A probe that fails at the point where ``f`` is not differentiable along it (a
relu at 0, ``abs`` at 0, a tie of ``max``, a zero bias meeting zero padding) is judged again at points moved
off the kink along the probe, with the candidate recomputed there: right there (counted in
``LeafCheck.beside``), wrong there (wrong: a real error does not stop at the kink), or non-smooth there
too (*non-smooth here*: skipped, never wrong, and a leaf with nothing else judged is inconclusive).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

from jnn.display import MAX_LINES

#: A check has power when it would flag a relative error of this size (a gradient ×1.05).
POWER = 0.05

#: Row statuses (``"surrogate"``: a leaf the user marked as having an intended, surrogate gradient).
OK, WRONG, NONSMOOTH, NONFINITE, SURROGATE = "ok", "wrong", "non-smooth", "non-finite", "surrogate"

#: The one definition of a relative error, everywhere in a report (printed in its header).
REL_ERR = "rel = max|Δ| / max(max|reference|, max|candidate|) over the leaf"


def rel_err(delta: float, ref: float, cand: float) -> float:
    """``delta / max(ref, cand)`` (magnitudes): ``REL_ERR``; 0 when ``delta`` is 0, at most 2 for finite
    values, nan when ``delta`` is."""
    if delta == 0:
        return 0.0
    scale = max(abs(ref), abs(cand))
    return delta / scale if scale > 0 else math.inf


@dataclass(frozen=True)
class LeafCheck:
    """One leaf of a ``CheckReport``.

    Attributes:
        path: the leaf's path, e.g. ``args[0]['w']`` (``args[i]`` is the i-th argument of ``f``), or
            ``layers[0].w`` in ``compare_grads``.
        shape: its shape.
        checked: entries checked one by one (all of them in full mode; those reached by localisation in
            fast mode), or 0 when the leaf was only checked along random directions.
        failed: entries found wrong (in fast mode, those localised: a lower bound).
        max_abs_err, max_rel_err: the largest |candidate − reference| among the entries (or probes) judged,
            and that over the larger of max|reference| and max|candidate| (``REL_ERR``).
        worst_index: the worst entry's index (None when no single entry was checked).
        reference, candidate: the values at ``worst_index`` (or of the worst directional check).
        status: ``"ok"``, ``"wrong"``, ``"non-smooth"`` (every probe of the leaf met a kink; not wrong) or
            ``"non-finite"`` (a NaN/inf candidate or reference; wrong).
        nonsmooth: entries (full mode) or probes (fast mode) that met a kink and could not be judged, at the
            point or beside it (skipped: never counted as wrong or right).
        resolution: the smallest relative error the leaf's checks would flag (tolerance over |reference|
            at its most sensitive probe; 0 for an all-zero gradient); ``POWER`` or more means no power.
        beside: entries or probes that met a kink at the point and were judged right at points moved off it
            along the probe (the candidate recomputed there).
    """

    path: str
    shape: tuple
    checked: int
    failed: int
    max_abs_err: float
    max_rel_err: float
    worst_index: tuple | None
    reference: float
    candidate: float
    status: str = OK
    nonsmooth: int = 0
    resolution: float = 0.0
    beside: int = 0

    @property
    def passed(self) -> bool:
        """True unless the leaf is wrong or non-finite (a non-smooth or surrogate leaf is not wrong)."""
        return self.status in (OK, NONSMOOTH, SURROGATE)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"path": self.path, "shape": list(self.shape), "checked": self.checked, "failed": self.failed,
                "max_abs_err": _j(self.max_abs_err), "max_rel_err": _j(self.max_rel_err),
                "worst_index": None if self.worst_index is None else list(self.worst_index),
                "reference": _j(self.reference), "candidate": _j(self.candidate), "status": self.status,
                "nonsmooth": self.nonsmooth, "beside": self.beside, "resolution": _j(self.resolution),
                "passed": self.passed}  # fmt: skip


@dataclass(frozen=True)
class OpCheck:
    """One operation of ``f``'s jaxpr whose derivative was checked at the inputs it received.

    Attributes:
        name: the operation's name (the function of a ``custom_vjp``/``custom_jvp``, a ``jax.jit`` function,
            or a ``jax.named_scope``/``jax.named_call`` path).
        kind: ``"custom_vjp"``, ``"custom_jvp"``, ``"jit"`` or ``"named"``.
        eqn: the equation's index in the jaxpr of f (``"17"``; ``"4/2"`` is equation 2 inside equation 4).
        source: ``file:line`` of the user's call where JAX recorded it (never a jnn file), or ``"defined at
            file:line"`` for a rule called by nothing else of the user's (a rule checked alone); "" if unknown.
        shapes: the shapes of its float inputs.
        passed: its derivative agrees with finite differences at those inputs.
        max_rel_err: the largest relative error of its check (``REL_ERR``).
        calls: call sites of the same operation found wrong (named functions used in several layers).
        inside: the name of the enclosing checked operation ("" at the top).
        within: the control flow around it (``"scan"``, ``"while loop"``, ``"cond branch 1"``, nested with
            ``" > "``), with the first failing step of a loop (``"scan (step 3)"``); "" at the top.
    """

    name: str
    kind: str
    eqn: str
    source: str
    shapes: tuple
    passed: bool
    max_rel_err: float
    calls: int = 1
    inside: str = ""
    within: str = ""

    def __str__(self) -> str:
        src = self.source if self.source.startswith("defined at") else f"called from {self.source}"
        where = f"jaxpr eqn {self.eqn}" + (f", {src}" if self.source else "")
        shapes = ", ".join(str(tuple(s)) for s in self.shapes) or "()"
        verdict = "is right" if self.passed else f"is wrong: rel err {self.max_rel_err:.3g}"
        inside = f" inside {self.inside}" if self.inside else ""
        inside += f" in {self.within}" if self.within else ""
        return f"the derivative of `{self.name}` ({self.kind}{inside}, {where}) {verdict} on inputs of shape {shapes}"

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"name": self.name, "kind": self.kind, "eqn": self.eqn, "source": self.source,
                "shapes": [list(s) for s in self.shapes], "passed": self.passed,
                "max_rel_err": _j(self.max_rel_err), "calls": self.calls, "inside": self.inside,
                "within": self.within}  # fmt: skip


@dataclass(frozen=True, repr=False)
class CheckReport:
    """What ``jnn.check_grads`` and ``jnn.compare_grads`` return; ``str(report)`` is a table and a
    verdict line.

    Attributes:
        leaves: one ``LeafCheck`` per differentiated leaf (the primary candidate).
        mode: ``"full"``, ``"fast"`` or ``"compare"`` (two given gradients).
        order: 1 or 2.
        candidate: what was checked (``"jax.vjp"``, ``"jax.jvp"``, ``"grad="``, ``"hvp of jax.grad"`` ...).
        reference: what it was checked against.
        directions: directional checks run (fast mode) or coordinates checked (full mode).
        precision: the lowest float type f computes in (``float64`` unless f casts its inputs).
        notes: remarks that do not change the verdict.
        problems: what makes the verdict "failed" beyond the rows (a non-finite f, ...), each saying where.
        forward: rows of the forward-mode (``jax.jvp``) check when it ran beside reverse mode, else None.
        operations: the operations of f checked one by one (when localisation ran), innermost wrong first.
        resolution: the smallest relative error the check as a whole would flag (max over leaves).
        buffer_bytes: the largest XLA buffer footprint of one compiled call the check made (arguments, which
            include the inputs, + outputs + temporaries, by XLA's memory analysis); None where XLA does not say.
        rtol, atol: the tolerances used.
        extra: measurements, e.g. ``{"localize_seconds": 0.8}``, the time spent naming operations.
        outputs: for a failing check of a function with several float outputs (a dict of heads, a tuple),
            ``(path, verdict)`` per output leaf checked alone (``("out['box']", "failed")``).
    """

    leaves: list
    mode: str
    order: int
    candidate: str
    directions: int
    precision: str
    notes: tuple = ()
    problems: tuple = ()
    forward: tuple | None = None
    operations: tuple = ()
    resolution: float = 0.0
    buffer_bytes: int | None = None
    rtol: float = 0.0
    atol: float = 0.0
    reference: str = "float64 finite differences"
    extra: dict = field(default_factory=dict)
    outputs: tuple = ()

    @property
    def wrong(self) -> bool:
        """True when something was found wrong."""
        rows = list(self.leaves) + list(self.forward or ())
        return bool(self.problems) or not all(r.passed for r in rows) or any(not o.passed for o in self.operations)

    @property
    def verdict(self) -> str:
        """``"passed"``, ``"failed"`` or ``"inconclusive"`` (see the module docstring)."""
        if self.wrong:
            return "failed"
        judged = [r for r in self.leaves if r.status != SURROGATE]
        if not judged or any(r.status == NONSMOOTH for r in judged) or not self.resolution < POWER:
            return "inconclusive"
        return "passed"

    @property
    def passed(self) -> bool:
        """True only for the verdict ``"passed"``."""
        return self.verdict == "passed"

    @property
    def failed_leaves(self) -> list:
        """The paths of the failing leaves (either mode)."""
        bad = [l.path for l in self.leaves if not l.passed]
        return bad + [l.path for l in self.forward or () if not l.passed and l.path not in bad]

    @property
    def failed_operations(self) -> list:
        """The wrong operations, innermost first (``OpCheck``)."""
        return [o for o in self.operations if not o.passed]

    @property
    def max_rel_err(self) -> float:
        """The largest per-leaf ``max_rel_err``."""
        return max((l.max_rel_err for l in self.leaves), default=0.0)

    @property
    def max_abs_err(self) -> float:
        """The largest per-leaf ``max_abs_err``."""
        return max((l.max_abs_err for l in self.leaves), default=0.0)

    def to_dict(self) -> dict:
        """JSON-ready dict (``json.dumps(report.to_dict())``)."""
        return {"verdict": self.verdict, "passed": self.passed, "mode": self.mode, "order": self.order,
                "candidate": self.candidate, "reference": self.reference, "directions": self.directions,
                "precision": self.precision, "rtol": self.rtol, "atol": self.atol,
                "resolution": _j(self.resolution), "problems": list(self.problems), "notes": list(self.notes),
                "leaves": [l.to_dict() for l in self.leaves],
                "forward": None if self.forward is None else [l.to_dict() for l in self.forward],
                "operations": [o.to_dict() for o in self.operations], "buffer_bytes": self.buffer_bytes,
                "outputs": [list(o) for o in self.outputs]}  # fmt: skip

    def __repr__(self) -> str:
        lines = str(self).splitlines()
        if len(lines) > MAX_LINES:  # the verdict is the last line: keep it
            lines = [*lines[: MAX_LINES - 2], f"... {len(lines) - MAX_LINES + 1} more lines (print(report))", lines[-1]]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(repr(self)) + "</pre>"

    def __str__(self) -> str:
        if self.mode == "compare":
            head = f"{self.candidate} vs {self.reference}  (pass: |Δ| <= {self.atol:.1e} + {self.rtol:.1e}·|ref|)"
        else:
            count = "coordinates" if self.mode == "full" else "directional checks"
            head = (f"check_grads: {self.candidate} vs {self.reference}, order {self.order}, {self.mode} mode "
                    f"({self.directions} {count}), f computes in {self.precision}")  # fmt: skip
        if self.leaves:
            head += f"; {REL_ERR}"
        lines = [head, *(_table(self.leaves) if self.leaves else [])]
        if self.forward is not None:
            bad = [r for r in self.forward if not r.passed]
            if bad:
                lines += ["forward mode (jax.jvp):", *_table(self.forward)]
            else:
                lines.append(f"forward mode (jax.jvp): agrees on {len(self.forward)}/{len(self.forward)} leaves")
        lines += [f"problem: {p}" for p in self.problems]
        if self.outputs:
            lines.append("outputs checked alone: " + ", ".join(f"{p} {v}" for p, v in self.outputs))
        for o in self.failed_operations:
            lines.append(f"operation: {o}" + (f" ({o.calls} call sites)" if o.calls > 1 else ""))
        if self.operations and not self.failed_operations:
            lines.append(f"operations: {len(self.operations)} checked one by one, none wrong at its inputs")
        lines += [f"note: {n}" for n in self.notes]
        lines.append(self._verdict_line())
        return "\n".join(lines)

    def _verdict_line(self) -> str:
        right = sum(l.status == OK for l in self.leaves)
        n = len(self.leaves)
        unit = "entries" if self.mode == "full" else "probes"
        beside, nonsmooth = sum(l.beside for l in self.leaves), sum(l.nonsmooth for l in self.leaves)
        kinks = f"; {beside} {unit} met a kink at the point and were checked beside it" if beside else ""
        kinks += f"; {nonsmooth} {unit} non-smooth here (skipped)" if nonsmooth else ""
        surrogates = sum(l.status == SURROGATE for l in self.leaves)
        kinks += f"; {surrogates} surrogate (not judged)" if surrogates else ""
        v = self.verdict
        if v == "failed":
            wrong = self.failed_leaves
            if not self.leaves:
                return "FAILED: " + (self.problems[0].split(":")[0] if self.problems else "nothing checked")
            return f"FAILED: {right}/{n} leaves right" + (f"; wrong: {', '.join(wrong)}" if wrong else "") + kinks
        if v == "inconclusive":
            kinked = [r.path for r in self.leaves if r.status == NONSMOOTH]
            if surrogates == n:
                why = "every leaf is marked surrogate: nothing was judged"
            elif kinked:
                why = (f"every probe of {', '.join(kinked)} met a kink, at the point and beside it: nothing was "
                       "judged there")  # fmt: skip
                if self.mode == "fast":
                    why += " (check that leaf in full mode: mode='full')"
            else:
                why = (
                    f"the check has no power at {self.precision}: it would flag only relative errors above "
                    f"{self.resolution:.3g} (a ×1.05 error could pass); check the function in float32/float64"
                )
            return f"INCONCLUSIVE: nothing wrong found in {n} leaves, but {why}{kinks}"
        return f"PASSED: {right}/{n} leaves right{kinks}"


def _table(rows) -> list:
    out = [("leaf", "shape", "checked", "failed", "max |Δ|", "max rel", "worst at", "reference", "candidate", "ok")]
    for l in rows:
        where = "-" if l.worst_index is None else str(list(l.worst_index))
        ok = {OK: "yes", NONSMOOTH: "non-smooth here", NONFINITE: "NO (non-finite)",
              SURROGATE: "surrogate (not judged)"}.get(l.status, "NO")  # fmt: skip
        out.append((l.path, "x".join(map(str, l.shape)) or "()", str(l.checked), str(l.failed), _num(l.max_abs_err),
                    _num(l.max_rel_err), where, _num(l.reference), _num(l.candidate), ok))  # fmt: skip
    widths = [max(len(r[i]) for r in out) for i in range(len(out[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in out]


def _num(v: float) -> str:
    """A table cell: ``-`` where nothing was measured (nan)."""
    return "-" if isinstance(v, float) and math.isnan(v) else f"{v:.3e}"


def _j(v):
    """A float for JSON: nan and inf as strings."""
    v = float(v)
    return v if math.isfinite(v) else str(v)


__all__ = ["POWER", "REL_ERR", "CheckReport", "LeafCheck", "OpCheck", "rel_err"]
