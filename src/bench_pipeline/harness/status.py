"""The one vocabulary of what happened to a cell or a build step.

A ``str`` enum: its values are the strings rows, journal lines, stage records and MLflow metric names
have always carried, so ``Status.OK == "ok"`` and a status read back from a file compares equal to
its member. Nothing here imports torch or pandas, so reports and config can use it cheaply.
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    OK = "ok"  # measured, parity within tolerance
    FAIL_ACCURACY = "fail_accuracy"  # measured, but outputs outside tolerance: numbers kept, never a winner
    UNSUPPORTED = "unsupported"  # the device cannot run this precision/backend (e.g. FP16 on CPU)
    SKIPPED = "skipped"  # a library or provider is missing, or the GPU is not supported by it
    ERROR = "error"  # the backend raised while running the cell
    OOM = "oom"  # out of memory
    TIMEOUT = "timeout"  # the cell ran past its time limit
    CRASHED = "crashed"  # the worker process died (segfault in a native library)
    FAIL_EXPORT = "fail_export"  # ONNX export failed
    FAIL_BUILD = "fail_build"  # TensorRT engine build failed
    FAIL_COMPILE = "fail_compile"  # torch.compile failed
    UNSTABLE = "unstable"  # measured, but its rounds disagreed or another process competed for the machine

    def __str__(self) -> str:  # f-strings, CSV and log lines show "ok", not "Status.OK"
        return self.value
