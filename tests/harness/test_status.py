"""One status vocabulary, one failure type, one classifier (issue 12, item 3)."""

import json

import pytest
import torch

from bench_pipeline.backends.base import CellFailure, classify
from bench_pipeline.backends.tensorrt.build import EngineError
from bench_pipeline.harness.results import STATUSES, TRUSTED, make_row
from bench_pipeline.harness.status import Status


def test_the_values_are_the_strings_rows_journals_and_metric_names_always_carried():
    assert STATUSES == ("ok", "fail_accuracy", "unsupported", "skipped", "error", "oom", "timeout", "crashed",
                        "fail_export", "fail_build", "fail_compile", "unstable")
    assert TRUSTED == ("ok",)
    assert json.dumps({"status": Status.FAIL_BUILD}) == '{"status": "fail_build"}'
    assert f"{Status.OOM}/b1_s16" == "oom/b1_s16" and {"ok": 1}[Status.OK] == 1


def test_a_row_keeps_the_plain_string_and_an_unknown_status_names_the_allowed_ones():
    assert type(make_row(status=Status.SKIPPED)["status"]) is str
    with pytest.raises(ValueError, match=r"unknown status 'okay'; allowed: \['ok', 'fail_accuracy'"):
        make_row(status="okay")


def test_a_tensorrt_engine_error_is_a_cell_failure_and_classifies_as_its_status():
    error = EngineError(Status.FAIL_BUILD, "the ONNX parser rejected model.onnx")
    assert isinstance(error, CellFailure)
    assert classify(error) == ("fail_build", "the ONNX parser rejected model.onnx")


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    MemoryError(),
    RuntimeError("std::bad_alloc"),
    RuntimeError("[TRT] [E] 1: [defaultAllocator.cpp::allocate] Error Code 1: Cuda Runtime (OutOfMemory)"),
    RuntimeError("cudaErrorMemoryAllocation while building"),
])
def test_every_out_of_memory_spelling_is_oom(error):
    assert classify(error)[0] == Status.OOM


def test_a_missing_library_is_skipped_and_anything_else_an_error_with_its_first_line():
    assert classify(ImportError("No module named 'tensorrt'")) == (
        "skipped", "a library this backend needs is not installed: ImportError: No module named 'tensorrt'")
    assert classify(ValueError("bad shape\nstack...")) == ("error", "ValueError: bad shape")
