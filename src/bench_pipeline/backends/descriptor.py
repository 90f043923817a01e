"""What the project knows about a backend before importing any of it: its runtime class, its build steps and the
artifacts its units read. Each backend package declares one ``BACKEND`` descriptor in its ``__init__.py``; the
registry (``backends/__init__.py``) lists them; ``pipelines/benchmark`` turns each into a Kedro namespace
``[build] -> plan``. Plain data, no torch and no Kedro, so ``config.py`` can validate names without importing
a backend library."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BuildStep:
    """One Kedro node of a backend's build (export, optimize, engine build, compile), declared as data so a
    backend package imports no Kedro. Its ``output`` keeps its catalog name outside the namespace."""

    func: str  # "module:function"
    inputs: tuple[str, ...]
    output: str
    name: str


@dataclass(frozen=True)
class BackendDescriptor:
    name: str
    #: "module:class" of its ``Backend``; None for a build-only backend (the shared ONNX export)
    runtime: str | None = None
    build: tuple[BuildStep, ...] = ()
    #: what its plan node reads: ``BackendContext.artifacts`` key -> catalog dataset
    reads: dict[str, str] = field(default_factory=dict)
    #: build-only backends whose steps it needs (their namespace runs whenever this backend is in the pipeline)
    needs: tuple[str, ...] = ()
    #: precision -> where this backend runs it (and how): the one place that says which backend has which
    #: precision; a precision not listed is an ``unsupported`` row before any worker starts, and the README's
    #: backend table says the same. Conditions of the hardware are checked by the backend (``precheck``).
    precisions: dict[str, str] = field(default_factory=dict)
    #: "module:function" raising ``ValueError`` for a bad variant option; ``config.py`` calls it at validation,
    #: so it should import neither torch nor the backend's library (dynamo's cannot: its options are torch's)
    options: str | None = None

    def precision_missing(self, precision: str) -> str | None:
        """Why this backend has no path for ``precision`` at all, or None when it has one."""
        if not self.runtime or not self.precisions or precision in self.precisions:
            return None  # a backend that declares no precisions restricts none (its own checks decide)
        return f"{self.name} has no {precision} path; it runs {', '.join(self.precisions)}"
