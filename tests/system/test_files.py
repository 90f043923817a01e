"""The files layer's helpers: the one slug, the one atomic write, the one JSON digest."""

import hashlib
import json
import os
from pathlib import PurePosixPath

from bench_pipeline.system.files import json_sha256, slug, write_atomic


def test_slug_folds_runs_of_other_characters_into_one_underscore_and_trims_them():
    assert slug("NVIDIA H200 (141 GB)") == "NVIDIA_H200_141_GB"
    assert slug("sentence-transformers/all-MiniLM-L6-v2", keep="._-") == "sentence-transformers_all-MiniLM-L6-v2"
    assert slug("cuda-graph-fp16", keep="_.-") == "cuda-graph-fp16"
    assert slug("///") == ""


def test_write_atomic_replaces_the_file_and_leaves_no_temporary_behind(tmp_path):
    target = tmp_path / "deep" / "engine.plan"
    write_atomic(target, b"first")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["engine.plan"]


def test_json_sha256_does_not_depend_on_key_order_and_matches_sorted_json():
    payload = {"b": 1, "a": [1, 2]}
    expected = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    assert json_sha256(payload) == json_sha256({"a": [1, 2], "b": 1}) == expected
    assert json_sha256({"path": PurePosixPath("/x")}, default=str) == json_sha256({"path": "/x"})
