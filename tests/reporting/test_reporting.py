"""The reporting library on realistic result frames built with ``results.make_row``: table math,
winners, the roofline, figures, and the HTML/Markdown reports, including frames where nothing
worked or columns are missing."""

from __future__ import annotations

import base64
import json
import math
import re

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from bench_pipeline import reporting  # noqa: E402
from bench_pipeline.harness.results import make_row, to_frame  # noqa: E402
from bench_pipeline.pipelines.report.nodes import mlflow_metrics  # noqa: E402
from bench_pipeline.reporting.roofline import GpuPeak, matmul_parameters, roofline_ms  # noqa: E402
from bench_pipeline.reporting.tables import decide_winner  # noqa: E402

GPU_ENV = {
    "gpu.name": "NVIDIA H100 80GB HBM3",
    "gpu.compute_capability": "9.0",
    "gpu.driver_version": "550.54.15",
    "cpu.model": "Intel(R) Xeon(R) Platinum 8480+",
    "lib.torch": "2.13.0",
    "lib.onnxruntime": "1.32.0",
    "lib.onnxruntime_providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "gpu.throttle_reasons": None,
}
BERT_BASE = {
    "name": "bert-base-uncased (random weights)",
    "model_type": "bert",
    "num_parameters": 109_482_240,
    "hidden_size": 768,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "has_pooler": True,
}
MODEL = "bert-base-uncased"
# FP32 eager p50 per (batch, seq), ms: the shape of a real H100 run.
EAGER_FP32_MS = {(1, 128): 6.1, (8, 128): 9.8, (1, 512): 7.9, (8, 512): 31.0}
COMPILE_REASON = "torch._dynamo.exc.Unsupported: call_function <built-in function scaled_dot_product> & friends"
SKIP_REASON = "tensorrt not installed: pip install tensorrt-cu12"


def measured(backend, variant, precision, batch, seq, p50, status="ok", reason=None, cosine=0.99999, **extra):
    """A measured row with every number a real harness records; ``extra`` adds or overrides columns."""
    return make_row(**{**dict(
        model=MODEL, backend=backend, variant=variant, precision=precision, batch=batch, seq=seq,
        status=status, reason=reason, device="cuda:0", threads=16,
        mean_ms=p50 * 1.01, p50_ms=p50, p90_ms=p50 * 1.04, p99_ms=p50 * 1.15, std_ms=p50 * 0.012,
        cov=0.012, cov_flag=False, host_p50_ms=p50 * 1.02, iterations=240, first_call_ms=p50 * 40,
        throughput_seq_s=1e3 * batch / p50, throughput_tok_s=1e3 * batch * seq / p50, peak_mem_mb=820.0,
        max_abs=4e-3 if cosine > 0.99 else 2.7, mean_abs=3e-4 if cosine > 0.99 else 0.35, cosine=cosine,
        pooled_max_abs=1e-3, pooled_mean_abs=2e-4, pooled_cosine=0.99999,
        extra=json.dumps({"note": "synthetic"})), **extra,
    })


def not_run(backend, variant, precision, batch, seq, status, reason, **extra):
    return make_row(model=MODEL, backend=backend, variant=variant, precision=precision, batch=batch, seq=seq,
                    status=status, reason=reason, device="cuda:0", threads=16, **extra)


def sweep_frame() -> pd.DataFrame:
    """Four cells, five configurations: a win, a fast wrong answer, a compile failure, a skip."""
    rows = []
    for (b, s), p50 in EAGER_FP32_MS.items():
        rows.append(measured("eager", "default", "fp32", b, s, p50, setup_s=1.5))
        rows.append(measured("eager", "default", "fp16", b, s, p50 / 2, setup_s=1.6))
        ort_status = ("fail_accuracy", "cosine 0.9100 < 0.999 (fp16 tolerance)") if (b, s) == (8, 512) else ("ok", None)
        rows.append(measured("onnxruntime", "cuda", "fp16", b, s, p50 / 4, *ort_status,
                             cosine=0.91 if ort_status[0] != "ok" else 0.99998, setup_s=2.0, export_s=9.0))
        if s == 512:
            rows.append(not_run("dynamo", "default", "bf16", b, s, "fail_compile", COMPILE_REASON, compile_s=31.0))
        else:  # slower than eager FP32 at batch 1: never pays back its compile time
            rows.append(measured("dynamo", "default", "bf16", b, s, p50 * (1.1 if b == 1 else 0.5),
                                 setup_s=1.0, compile_s=40.0))
        rows.append(not_run("tensorrt", "default", "fp16", b, s, "skipped", SKIP_REASON))
    return to_frame(rows)


def all_failed_frame() -> pd.DataFrame:
    rows = []
    for b, s in EAGER_FP32_MS:
        rows.append(not_run("eager", "default", "fp32", b, s, "oom", f"CUDA out of memory at {b}x{s}"))
        rows.append(not_run("onnxruntime", "cuda", "fp16", b, s, "skipped", "CUDAExecutionProvider not available"))
    return to_frame(rows)


def row_of(frame, backend, precision, batch, seq):
    match = frame[(frame["backend"] == backend) & (frame["precision"] == precision)
                  & (frame["batch"] == batch) & (frame["seq"] == seq)]
    assert len(match) == 1
    return match.iloc[0]


# ---------------------------------------------------------------- tables


def test_speedup_is_baseline_p50_over_cell_p50():
    table = reporting.add_speedup(sweep_frame())
    assert row_of(table, "eager", "fp32", 8, 128)["speedup"] == pytest.approx(1.0)
    assert row_of(table, "eager", "fp16", 8, 128)["speedup"] == pytest.approx(2.0)
    assert row_of(table, "onnxruntime", "fp16", 1, 512)["speedup"] == pytest.approx(4.0)
    assert row_of(table, "dynamo", "bf16", 1, 128)["speedup"] == pytest.approx(1 / 1.1)
    assert row_of(table, "onnxruntime", "fp16", 1, 512)["baseline_p50_ms"] == pytest.approx(7.9)
    assert math.isnan(row_of(table, "tensorrt", "fp16", 1, 128)["speedup"])
    assert math.isnan(row_of(table, "dynamo", "bf16", 8, 512)["speedup"])


def test_speedup_is_empty_where_the_baseline_cell_failed():
    frame = sweep_frame()
    baseline = (frame["backend"] == "eager") & (frame["precision"] == "fp32")
    baseline &= (frame["batch"] == 1) & (frame["seq"] == 128)
    frame.loc[baseline, ["status", "reason"]] = ["error", "RuntimeError: CUDA error: an illegal memory access"]
    table = reporting.add_speedup(frame)
    assert math.isnan(row_of(table, "eager", "fp16", 1, 128)["speedup"])
    assert row_of(table, "eager", "fp16", 8, 128)["speedup"] == pytest.approx(2.0)


def test_winner_is_fastest_ok_and_never_a_fail_accuracy_cell():
    best = reporting.winners(sweep_frame()).set_index(["batch", "seq"])
    # At 8x512 ONNX Runtime is fastest (31/4 ms) but outside tolerance: eager FP16 wins.
    assert best.loc[(8, 512), "config"] == "eager fp16"
    assert best.loc[(8, 512), "p50_ms"] == pytest.approx(15.5)
    assert best.loc[(1, 128), "config"] == "onnxruntime:cuda fp16"
    assert best.loc[(1, 128), "speedup"] == pytest.approx(4.0)
    assert (best["note"] == "").all()
    assert (best["verdict"] == "interval unknown").all()  # these rows have no intervals


def test_winner_row_for_a_cell_where_nothing_ran_ok_says_so():
    best = reporting.winners(all_failed_frame())
    assert len(best) == 4
    assert best["backend"].isna().all()
    assert best["note"].str.contains("no configuration ran ok").all()
    assert (best["verdict"] == "none").all()
    assert "oom ×1" in best["note"].iloc[0] and "skipped ×1" in best["note"].iloc[0]


def test_failures_lists_every_cell_that_did_not_run_ok_with_its_reason():
    failed = reporting.failures(sweep_frame())
    assert sorted(failed["status"].unique()) == ["fail_accuracy", "fail_compile", "skipped"]
    assert len(failed) == 1 + 2 + 4
    assert (failed[failed["status"] == "skipped"]["reason"] == SKIP_REASON).all()
    assert failed["reason"].notna().all()


def test_break_even_counts_calls_that_repay_the_extra_one_off_cost():
    even = reporting.break_even(sweep_frame())
    ort = row_of(even, "onnxruntime", "fp16", 8, 128)
    # (2.0 s setup + 9.0 s export) - 1.5 s eager setup, repaid at 9.8 - 2.45 ms per call.
    assert ort["extra_one_off_s"] == pytest.approx(9.5)
    assert ort["break_even_calls"] == pytest.approx(9.5e3 / (9.8 - 2.45))
    assert math.isinf(row_of(even, "dynamo", "bf16", 1, 128)["break_even_calls"])  # slower: never
    assert math.isnan(row_of(even, "eager", "fp32", 1, 128)["break_even_calls"])  # the baseline itself
    assert set(even["status"]) == {"ok"}


def test_a_slower_configuration_with_no_extra_one_off_cost_never_breaks_even():
    frame = to_frame([
        measured("eager", "default", "fp32", 1, 128, 6.1, setup_s=1.5),
        measured("eager", "default", "bf16", 1, 128, 6.7, setup_s=1.5),  # slower, same cost: never
        measured("eager", "default", "fp16", 1, 128, 3.0, setup_s=1.5),  # faster, same cost: at once
    ])
    even = reporting.break_even(frame)
    assert row_of(even, "eager", "bf16", 1, 128)["extra_one_off_s"] == 0
    assert math.isinf(row_of(even, "eager", "bf16", 1, 128)["break_even_calls"])
    assert row_of(even, "eager", "fp16", 1, 128)["break_even_calls"] == 0


def test_a_compile_paid_by_the_first_shape_is_charged_to_every_cell_of_the_configuration():
    # dynamic shapes: 1x128 compiles (40 s); 8x128 reuses that graph, its first call takes 0.02 s
    frame = to_frame([
        measured("eager", "default", "fp32", 1, 128, 6.1, setup_s=1.5),
        measured("eager", "default", "fp32", 8, 128, 9.8, setup_s=1.5),
        measured("dynamo", "dynamic", "fp32", 1, 128, 3.1, setup_s=1.0, compile_s=40.0),
        measured("dynamo", "dynamic", "fp32", 8, 128, 4.9, setup_s=1.0, compile_s=0.02),
    ])
    even = reporting.break_even(frame)
    second = row_of(even, "dynamo", "fp32", 8, 128)
    assert second["one_off_s"] == pytest.approx(41.0)
    assert second["extra_one_off_s"] == pytest.approx(39.5)
    assert second["break_even_calls"] == pytest.approx(39.5e3 / (9.8 - 4.9))
    table = reporting.results_table(frame, GPU_ENV, BERT_BASE)
    assert row_of(table, "dynamo", "fp32", 8, 128)["one_off_s"] == pytest.approx(41.0)
    markdown = reporting.markdown_summary(frame, GPU_ENV, BERT_BASE)
    assert "| dynamo:dynamic fp32 | 1.00 | 40.00 |" in markdown  # the cost table shows the same compile


def test_results_table_adds_derived_columns_and_survives_parquet(tmp_path):
    table = reporting.results_table(sweep_frame(), GPU_ENV, BERT_BASE)
    for column in ("speedup", "break_even_calls", "gflops", "achieved_tflops", "roofline_ms", "roofline_pct"):
        assert column in table.columns
    assert len(table) == len(sweep_frame())
    assert reporting.results_table(table, GPU_ENV, BERT_BASE).equals(table)  # applying twice changes nothing
    path = tmp_path / "results.parquet"
    table.to_parquet(path)
    pd.testing.assert_frame_equal(pd.read_parquet(path), table)


def test_bad_frames_fail_early_naming_the_problem():
    with pytest.raises(ValueError, match=r"lacks columns \['status'"):
        reporting.winners(sweep_frame().drop(columns=["status"]))
    doubled = pd.concat([sweep_frame(), sweep_frame().iloc[:1]])
    with pytest.raises(ValueError, match="more than one row for the cells"):
        reporting.add_speedup(doubled)
    two_models = sweep_frame().assign(model=["a", "b"] * 10)
    with pytest.raises(ValueError, match="one model"):
        reporting.failures(two_models)


# ---------------------------------------------------------------- roofline


def test_forward_flops_of_bert_base_at_1x128_matches_a_hand_count():
    # Per layer and token: Q, K, V, O (4 * 768^2) and the FFN (2 * 768 * 3072) multiply-adds,
    # 2 FLOPs each: 2 * 7,077,888 * 128 tokens * 12 layers = 21.74 GFLOP.
    # Attention per layer: QK^T and AV, 2 * 128^2 * 768 FLOPs each: 12 * 2 * 25.17 M = 0.60 GFLOP.
    # Pooler: 2 * 768^2 = 1.2 MFLOP. Total 22.35 GFLOP (the usual "about 22.5" for BERT-base 1x128).
    hand = 2 * 7_077_888 * 128 * 12 + 12 * 2 * (2 * 128 * 128 * 768) + 2 * 768 * 768
    flops = reporting.forward_flops(BERT_BASE, 1, 128)
    assert flops == pytest.approx(hand, rel=1e-9)
    assert flops == pytest.approx(22.5e9, rel=0.05)


def test_roofline_bound_reproduces_the_design_guide_lower_bounds():
    # DESIGN.md: BERT-base FP16 at 800 TFLOP/s and 3 TB/s -> 57 us at 1x128 (weight reads bound it),
    # 224 us at 8x128, 459 us at 8x256, 894 us at 32x128, 3.87 ms at 32x512 (compute bound).
    design = GpuPeak("design guide", 60.0, 800.0, 800.0, 3.0, "DESIGN.md")
    expected_us = {(1, 128): 57, (8, 128): 224, (8, 256): 459, (32, 128): 894, (32, 512): 3870}
    for (batch, seq), micros in expected_us.items():
        assert 1e3 * roofline_ms(BERT_BASE, design, "fp16", batch, seq) == pytest.approx(micros, rel=0.02)
    assert matmul_parameters(BERT_BASE) == 12 * 7_077_888 + 768 * 768


@pytest.mark.parametrize(
    ("reported_name", "table_name"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA A100-SXM4-40GB", "A100 SXM 40GB"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("Tesla T4", "T4"),
    ],
)
def test_gpu_names_as_cuda_reports_them_find_their_peaks(reported_name, table_name):
    assert reporting.gpu_peak(reported_name).name == table_name


def test_roofline_pct_where_the_gpu_is_known_and_empty_where_not():
    frame = sweep_frame()
    known = reporting.add_roofline(frame, GPU_ENV, BERT_BASE)
    cell = row_of(known, "onnxruntime", "fp16", 1, 128)
    peak = reporting.gpu_peak(GPU_ENV["gpu.name"])
    assert cell["roofline_pct"] == pytest.approx(100 * roofline_ms(BERT_BASE, peak, "fp16", 1, 128) / cell["p50_ms"])
    assert 0 < cell["roofline_pct"] < 100
    assert math.isnan(row_of(known, "tensorrt", "fp16", 1, 128)["roofline_pct"])  # skipped: no latency

    unknown = reporting.add_roofline(frame, {**GPU_ENV, "gpu.name": "NVIDIA A10G"}, BERT_BASE)
    assert unknown["roofline_pct"].isna().all()
    assert unknown["gflops"].notna().all()  # FLOPs need only the model
    assert "not in the peak table" in reporting.roofline_basis({"gpu.name": "NVIDIA A10G"}, BERT_BASE)

    no_arch = reporting.add_roofline(frame, GPU_ENV, {"name": "mystery"})
    assert no_arch["roofline_pct"].isna().all() and no_arch["gflops"].isna().all()
    with pytest.raises(ValueError, match="intermediate_size"):
        reporting.forward_flops({"hidden_size": 768, "num_hidden_layers": 12}, 1, 128)


def test_cpu_rows_get_no_roofline_and_figures_name_the_cpu():
    frame = sweep_frame().assign(device="cpu")
    env = {"cpu.model": "AMD EPYC 9654", "gpu.name": None}
    assert reporting.add_roofline(frame, env, BERT_BASE)["roofline_pct"].isna().all()
    figure, _ = reporting.speedup_heatmap(frame, env, BERT_BASE)
    assert "AMD EPYC 9654" in figure.get_suptitle()


# ---------------------------------------------------------------- figures


def test_figures_are_drawn_titled_and_show_failed_cells():
    figures, notes = reporting.draw_all(sweep_frame(), GPU_ENV, BERT_BASE)
    assert notes == {}
    assert set(figures) == set(reporting.FIGURE_TITLES)
    assert all(isinstance(f, Figure) for f in figures.values())
    for figure in figures.values():
        title = figure.get_suptitle()
        assert BERT_BASE["name"] in title and GPU_ENV["gpu.name"] in title

    heatmap = figures["speedup_heatmap.png"]
    panels = [ax for ax in heatmap.axes if ax.get_title()]
    # tensorrt ran at no cell: no panel of four hatched 'skipped' cells, the footnote names it
    assert sorted(ax.get_title() for ax in panels) == sorted(
        ["eager fp32", "eager fp16", "onnxruntime:cuda fp16", "dynamo bf16"]
    )
    assert "Not run here (the report says why): tensorrt fp16." in heatmap.texts[-1].get_text()
    assert "[low–high]" not in heatmap.texts[-1].get_text()  # these rows carry no intervals
    texts = {ax.get_title(): [t.get_text() for t in ax.texts] for ax in panels}
    assert "4.00×\n1.52 ms" in texts["onnxruntime:cuda fp16"]
    assert any(t.startswith("fail_accuracy\n(4.00×)") for t in texts["onnxruntime:cuda fp16"])
    hatched = [p for ax in panels for p in ax.patches if isinstance(p, Rectangle) and p.get_hatch()]
    assert len(hatched) == 1 + 2  # fail_accuracy, fail_compile x2

    latency = figures["latency_vs_batch.png"]
    plots = [ax for ax in latency.axes if ax.get_title().startswith("sequence length")]
    assert [ax.get_title() for ax in plots] == ["sequence length 128", "sequence length 512"]
    assert all(ax.get_yscale() == "log" for ax in plots)
    assert "ms" in plots[0].get_ylabel()


def test_figures_save_through_kedros_matplotlib_dataset(tmp_path):
    from kedro_datasets.matplotlib import MatplotlibDataset

    figures, _ = reporting.draw_all(sweep_frame(), GPU_ENV, BERT_BASE)
    MatplotlibDataset(filepath=str(tmp_path / "figures")).save(figures)
    for name in figures:
        assert (tmp_path / "figures" / name).read_bytes().startswith(b"\x89PNG")


def test_a_missing_optional_column_leaves_its_figure_out_with_a_note():
    frame = sweep_frame().drop(columns=["p99_ms", "setup_s", "export_s", "build_s", "compile_s"])
    figure, note = reporting.latency_vs_batch(frame, GPU_ENV, BERT_BASE)
    assert figure is None and "p99_ms" in note
    figure, note = reporting.cost_break_even(frame, GPU_ENV, BERT_BASE)
    assert figure is None and "compile_s" in note
    figure, note = reporting.speedup_heatmap(frame, GPU_ENV, BERT_BASE)
    assert isinstance(figure, Figure) and note is None

    figures, notes = reporting.draw_all(frame, GPU_ENV, BERT_BASE)
    html = reporting.html_report(frame, GPU_ENV, BERT_BASE, figures, notes)
    assert "Latency figure left out" in html and "p99_ms" in html
    assert html.count("data:image/png;base64,") == 1
    assert "No setup, export, build or compile times were recorded." in html


# ---------------------------------------------------------------- reports


def test_html_report_is_one_self_contained_file_with_everything_a_reader_needs():
    frame = sweep_frame()
    figures, notes = reporting.draw_all(frame, GPU_ENV, BERT_BASE)
    html = reporting.html_report(frame, GPU_ENV, BERT_BASE, figures, notes)

    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<style>" in html
    assert not re.search(r"""(src|href)=["']?(https?:|//|[\w./-]+\.(png|css|js))""", html)  # nothing linked
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 3
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)

    for heading in ("Environment", "Winner per cell", "Latency (p50)", "Parity against FP32 eager",
                    "Skipped and failed cells", "Cost to get there", "Share of roofline"):
        assert f"<h2>{heading}" in html
    assert "NVIDIA H100 80GB HBM3" in html and "2.13.0" in html
    assert "CUDAExecutionProvider, CPUExecutionProvider" in html
    assert SKIP_REASON in html
    assert "cosine 0.9100 &lt; 0.999 (fp16 tolerance)" in html  # reasons are escaped, not raw markup
    assert "&lt;built-in function scaled_dot_product&gt; &amp; friends" in html
    assert "<built-in" not in html
    assert "eager fp16" in html and "15.5" in html  # 8x512 winner


def test_markdown_twin_links_figures_by_relative_path_and_lists_failures():
    frame = sweep_frame()
    figures, notes = reporting.draw_all(frame, GPU_ENV, BERT_BASE)
    markdown = reporting.markdown_summary(
        frame, GPU_ENV, BERT_BASE, {name: f"figures/{name}" for name in figures}, notes
    )
    assert markdown.startswith(f"# Benchmark report: {BERT_BASE['name']} on NVIDIA H100 80GB HBM3")
    for name in figures:
        assert f"](figures/{name})" in markdown
    # these rows carry no intervals (older results): the fastest wins, and the report says on what grounds
    assert "| 8×512 | eager fp16 (interval unknown) | 15.5 | 2.00× |" in markdown
    assert "fail_accuracy (7.75 ms)" in markdown
    assert COMPILE_REASON in markdown and SKIP_REASON in markdown
    assert "Best trustworthy speedup over FP32 eager: 4.00×" in markdown


def test_a_frame_with_only_failed_cells_still_reports_and_says_so():
    frame = all_failed_frame()
    figures, notes = reporting.draw_all(frame, GPU_ENV, BERT_BASE)
    assert figures == {} and set(notes) == set(reporting.FIGURE_TITLES)
    html = reporting.html_report(frame, GPU_ENV, BERT_BASE, figures, notes)
    markdown = reporting.markdown_summary(frame, GPU_ENV, BERT_BASE, {}, notes)
    for report in (html, markdown):
        assert "No cell succeeded: all 8 cells failed, were skipped or were unstable" in report
        assert "CUDA out of memory at 8x512" in report
        assert "CUDAExecutionProvider not available" in report
        assert "no configuration ran ok" in report
    assert "data:image/png" not in html


def test_an_empty_results_table_gives_a_report_that_says_nothing_ran():
    empty = to_frame([])
    markdown = reporting.markdown_summary(empty, GPU_ENV, BERT_BASE)
    assert "No cells were run: the results table is empty." in markdown
    figures, notes = reporting.draw_all(empty, GPU_ENV, BERT_BASE)
    assert figures == {} and len(notes) == 3
    assert "No cells were run" in reporting.html_report(empty, GPU_ENV, BERT_BASE, figures, notes)


def test_cells_measured_on_a_throttled_gpu_are_listed_in_the_report():
    from bench_pipeline.harness.results import make_row, to_frame
    from bench_pipeline.reporting import markdown_summary

    common = dict(model="m", variant="default", seq=128, device="cuda:0", mean_ms=1.0, p50_ms=1.0, p90_ms=1.1,
                  p99_ms=1.2, cosine=1.0, max_abs=0.0, mean_abs=0.0)
    frame = to_frame([
        make_row(**common, backend="eager", precision="fp32", batch=1, status="ok"),
        make_row(**common, backend="eager", precision="fp16", batch=1, status="ok",
                 gpu_warnings="the GPU is throttling its clocks (sw_power_cap)"),
    ])
    text = markdown_summary(frame, {"gpu.name": "NVIDIA H200"}, {"name": "m"})
    assert "Cells measured on a throttled or shared GPU" in text
    assert "sw_power_cap" in text


# ---------------------------------------------------------------- how sure the report is (issue 10)


def sure(backend, variant, precision, batch, seq, p50, low, high, speedup=None, s_low=None, s_high=None, **extra):
    """A row as the interleaved-rounds harness records it: p50 with its bootstrap interval and,
    where given, the paired speedup with its own."""
    return measured(backend, variant, precision, batch, seq, p50, **{
        "rounds": 5, "round_spread": 0.02, "p50_ci_low_ms": low, "p50_ci_high_ms": high,
        "speedup": speedup, "speedup_ci_low": s_low, "speedup_ci_high": s_high, **extra,
    })


def one_cell(*rows) -> pd.DataFrame:
    return to_frame([sure("eager", "default", "fp32", 1, 128, 6.1, 6.0, 6.2, 1.0, 1.0, 1.0), *rows])


def test_add_speedup_keeps_the_rows_paired_speedup_and_interval_and_falls_back_for_older_rows():
    frame = to_frame([
        sure("eager", "default", "fp32", 1, 128, 6.1, 6.0, 6.2, 1.0, 1.0, 1.0),
        # paired round by round: 3.9, not the 6.1 / 1.5 = 4.07 of the medians
        sure("onnxruntime", "cuda", "fp16", 1, 128, 1.5, 1.45, 1.55, 3.9, 3.8, 4.0),
        measured("eager", "default", "fp16", 1, 128, 3.05),  # no paired speedup recorded: the ratio
        not_run("tensorrt", "default", "fp16", 1, 128, "skipped", SKIP_REASON, speedup=2.0),
    ])
    table = reporting.add_speedup(frame)
    ort = row_of(table, "onnxruntime", "fp16", 1, 128)
    assert (ort["speedup"], ort["speedup_ci_low"], ort["speedup_ci_high"]) == (3.9, 3.8, 4.0)
    fallback = row_of(table, "eager", "fp16", 1, 128)
    assert fallback["speedup"] == pytest.approx(2.0)
    assert math.isnan(fallback["speedup_ci_low"]) and math.isnan(fallback["speedup_ci_high"])
    assert math.isnan(row_of(table, "tensorrt", "fp16", 1, 128)["speedup"])  # not measured: no speedup

    older = frame.drop(columns=["speedup", "speedup_ci_low", "speedup_ci_high"])  # results from before issue 10
    old_table = reporting.results_table(older, GPU_ENV, BERT_BASE)
    assert row_of(old_table, "onnxruntime", "fp16", 1, 128)["speedup"] == pytest.approx(6.1 / 1.5)
    assert old_table["speedup_ci_low"].isna().all()
    new_table = reporting.results_table(frame, GPU_ENV, BERT_BASE)
    assert row_of(new_table, "onnxruntime", "fp16", 1, 128)["speedup"] == 3.9
    assert reporting.results_table(new_table, GPU_ENV, BERT_BASE).equals(new_table)


def test_no_speedup_over_a_baseline_cell_that_is_unstable():
    frame = to_frame([
        sure("eager", "default", "fp32", 1, 128, 6.1, 4.0, 9.0, 1.0, 1.0, 1.0,
             status="unstable", reason="rounds disagree", contamination="3 of 3 rounds: other processes"),
        sure("onnxruntime", "cuda", "fp16", 1, 128, 1.5, 1.45, 1.55, 3.9, 3.8, 4.0),
    ])
    ort = row_of(reporting.add_speedup(frame), "onnxruntime", "fp16", 1, 128)
    assert ort["status"] == "ok" and ort["p50_ms"] == 1.5  # its own latency stands
    assert math.isnan(ort["speedup"]) and math.isnan(ort["speedup_ci_low"])  # its ratio over an unsure one does not


def test_winner_is_named_when_its_interval_clears_the_runner_ups():
    frame = one_cell(sure("onnxruntime", "cuda", "fp16", 1, 128, 1.50, 1.45, 1.55, 4.1, 3.9, 4.2),
                     sure("dynamo", "default", "fp16", 1, 128, 1.70, 1.60, 1.80, 3.6, 3.4, 3.8))
    verdict, named = decide_winner(frame)
    assert verdict == "clear" and [frame.loc[i, "backend"] for i in named] == ["onnxruntime"]
    best = reporting.winners(frame).iloc[0]
    assert (best["config"], best["verdict"], best["tied"]) == ("onnxruntime:cuda fp16", "clear", "")
    markdown = reporting.markdown_summary(frame, GPU_ENV, BERT_BASE)
    assert "| 1×128 | onnxruntime:cuda fp16 | 1.50 [1.45–1.55] | 4.10× [3.90–4.20] |" in markdown


def test_two_configurations_whose_intervals_overlap_tie_and_a_clearly_slower_one_is_left_out():
    frame = one_cell(sure("onnxruntime", "cuda", "fp16", 1, 128, 1.50, 1.40, 1.62, 4.1, 3.9, 4.3),
                     sure("dynamo", "default", "fp16", 1, 128, 1.55, 1.60, 1.70, 3.9, 3.7, 4.1),
                     sure("eager", "default", "fp16", 1, 128, 3.05, 3.0, 3.1, 2.0, 1.9, 2.1))
    verdict, named = decide_winner(frame)
    assert verdict == "tie"
    assert [frame.loc[i, "backend"] for i in named] == ["onnxruntime", "dynamo"]
    best = reporting.winners(frame).iloc[0]
    assert best["tied"] == "onnxruntime:cuda fp16, dynamo fp16"
    for report in (reporting.markdown_summary(frame, GPU_ENV, BERT_BASE),
                   reporting.html_report(frame, GPU_ENV, BERT_BASE, {})):
        assert "tie: onnxruntime:cuda fp16, dynamo fp16" in report


def test_an_unstable_fastest_cell_never_wins_nor_makes_the_headline():
    frame = one_cell(
        sure("onnxruntime", "cuda", "fp16", 1, 128, 1.50, 1.45, 1.55, 4.1, 3.9, 4.2),
        sure("dynamo", "reduce-overhead", "fp16", 1, 128, 0.60, 0.40, 0.90, 10.2, 6.8, 15.3, status="unstable",
             reason="round medians spread 48 % (bound 5 %) after a re-measure",
             contamination="cpu load 1.9 from pid 4242 (python)"),
    )
    verdict, named = decide_winner(frame)
    assert verdict == "clear" and [frame.loc[i, "backend"] for i in named] == ["onnxruntime"]
    assert reporting.winners(frame).iloc[0]["config"] == "onnxruntime:cuda fp16"
    headline = reporting.markdown_summary(frame, GPU_ENV, BERT_BASE).split("## Winner per cell")[0]
    best = "Best trustworthy speedup over FP32 eager: 4.10× [3.90–4.20] (onnxruntime:cuda fp16 at 1×128)"
    assert best in headline
    assert "10.2" not in headline
    assert "1 unstable cell(s) are left out" in headline


def test_missing_intervals_fall_back_to_the_fastest_and_say_interval_unknown():
    frame = one_cell(measured("onnxruntime", "cuda", "fp16", 1, 128, 1.5),
                     sure("dynamo", "default", "fp16", 1, 128, 1.7, 1.6, 1.8))
    verdict, named = decide_winner(frame)
    assert verdict == "interval unknown" and frame.loc[named[0], "backend"] == "onnxruntime"
    assert "| 1×128 | onnxruntime:cuda fp16 (interval unknown) | 1.50 |" in reporting.markdown_summary(
        frame, GPU_ENV, BERT_BASE)


def issue10_frame() -> pd.DataFrame:
    """Two cells with intervals, one unstable, one dispatch-bound, a configuration skipped everywhere."""
    rows = []
    for (b, s), p50 in {(1, 128): 4.09, (8, 128): 9.8}.items():
        rows.append(sure("eager", "default", "fp32", b, s, p50, p50 * 0.98, p50 * 1.03, 1.0, 1.0, 1.0,
                         dispatch_share=0.7 if b == 1 else 0.1))
        rows.append(sure("onnxruntime", "cuda-graph", "fp16", b, s, p50 / 8.9, p50 / 9.2, p50 / 8.6, 8.9, 8.6, 9.2,
                         dispatch_share=0.02, cov_flag=b == 8, rounds_set_aside=2 if b == 1 else 0))
        status, reason = ("unstable", "round medians spread 31 % (bound 5 %)") if b == 8 else ("ok", None)
        rows.append(sure("dynamo", "inductor", "fp16", b, s, p50 / 2, p50 / 2.2, p50 / 1.8, 2.0, 1.8, 2.2,
                         status=status, reason=reason, round_spread=0.31 if b == 8 else 0.01,
                         contamination="another GPU process: pid 777 (python), 2.1 GiB" if b == 8 else None))
        rows.append(not_run("tensorrt", "default", "fp16", b, s, "skipped", SKIP_REASON))
    return to_frame(rows)


ISSUE10_ENV = {**GPU_ENV, "host.launch_us": 4.12, "host.op_us": 2.31}


def test_latency_cells_print_p50_and_speedup_with_their_intervals_and_marks():
    markdown = reporting.markdown_summary(issue10_frame(), ISSUE10_ENV, BERT_BASE)
    latency = markdown.split("## Latency (p50)")[1].split("\n## ")[0]
    eager = "| eager fp32 | 4.09 ms [4.01–4.21]† · 1.00× [1.00–1.00] | 9.80 ms [9.60–10.1] · 1.00× [1.00–1.00] |"
    assert eager in latency
    assert "1.10 ms [1.07–1.14]* · 8.90× [8.60–9.20]" in latency  # the noisy-rounds star
    assert "unstable: 4.90 ms [4.45–5.44] · 2.00× [1.80–2.20]" in latency
    assert "* the calls within a round scattered more than this device's noise bound" in latency
    assert "† dominated by host dispatch: the GPU waited for the host for more than 50 % of each call" in latency
    graphs = next(line for line in latency.splitlines() if line.startswith("| onnxruntime:cuda-graph fp16 |"))
    assert graphs.split(" | ")[1].count("‡") == 1 and "‡" not in graphs.split(" | ")[2]  # 1x128 set 2 rounds aside
    assert "‡ some rounds were set aside (outlying or contaminated" in latency
    assert "tensorrt" not in latency  # listed once under 'Not run here, and why'


def test_a_speedup_not_paired_round_by_round_is_marked_so_wherever_it_is_printed():
    """The sweep pairs rounds only where candidate and baseline counted the same rounds of one sweep; any other
    speedup is a ratio of independently resampled medians, and the report must not call it paired."""
    frame = one_cell(sure("onnxruntime", "cuda", "fp16", 1, 128, 1.0, 0.98, 1.03, 6.1, 5.8, 6.3,
                          extra='{"speedup_paired": false}'),
                     sure("dynamo", "inductor", "fp16", 1, 128, 2.0, 1.97, 2.04, 3.05, 2.9, 3.1,
                          extra='{"speedup_paired": true}'))
    markdown = reporting.markdown_summary(frame, GPU_ENV, BERT_BASE)
    latency = markdown.split("## Latency (p50)")[1].split("\n## ")[0]
    assert "1.00 ms [0.980–1.03] · 6.10× [5.80–6.30]°" in latency
    assert "2.00 ms [1.97–2.04] · 3.05× [2.90–3.10] |" in latency  # paired: no mark
    assert "paired round by round unless marked °" in latency and "° a speedup not paired round by round" in latency
    assert "6.10× [5.80–6.30]° (onnxruntime" in markdown  # the headline's best speedup carries it too
    heatmap, _ = reporting.speedup_heatmap(frame, GPU_ENV, BERT_BASE)
    ort = next(ax for ax in heatmap.axes if ax.get_title() == "onnxruntime:cuda fp16")
    assert "6.10×°\n[5.80–6.30]\n1.00 ms" in [t.get_text() for t in ort.texts]
    assert "° a speedup not paired round by round" in heatmap.texts[-1].get_text()


def test_report_leads_with_the_answer_and_ends_with_the_collapsed_environment():
    frame = issue10_frame()
    figures, notes = reporting.draw_all(frame, ISSUE10_ENV, BERT_BASE)
    html = reporting.html_report(frame, ISSUE10_ENV, BERT_BASE, figures, notes)
    markdown = reporting.markdown_summary(frame, ISSUE10_ENV, BERT_BASE, {n: f"figures/{n}" for n in figures}, notes)
    dispatch = "host dispatch: 4.1 µs per kernel launch, 2.3 µs per tiny CPU torch op; 1 of 6 measured cells are"
    order = ["Summary", "Winner per cell", "Speedup over FP32 eager", "Latency (p50) and speedup over FP32 eager",
             "Not run here, and why", "Unstable cells", "Skipped and failed cells", "Model", "Environment"]
    heatmap = reporting.FIGURE_TITLES["speedup_heatmap.png"]
    for report, heading, figure in ((html, "<h2>{}</h2>", f'<img alt="{heatmap}"'),
                                    (markdown, "## {}\n", f"![{heatmap}](figures/speedup_heatmap.png)")):
        positions = [report.index(heading.format(title)) for title in order]
        assert positions == sorted(positions)
        assert positions[0] < report.index(dispatch) < positions[1]
        assert positions[2] < report.index(figure) < positions[3]  # the speedup figure right after the winners
    assert "<details><summary><h2>Environment</h2></summary>" in html
    assert html.rstrip().endswith("</details></section>\n</body></html>")
    assert "<details><summary>" in markdown.split("## Environment")[1]
    assert markdown.rstrip().endswith("</details>")


def test_skipped_everywhere_configurations_are_listed_once_with_why():
    frame = issue10_frame()
    markdown = reporting.markdown_summary(frame, ISSUE10_ENV, BERT_BASE)
    not_run = markdown.split("## Not run here, and why")[1].split("\n## ")[0]
    assert f"| tensorrt fp16 | skipped ×2 | {SKIP_REASON} |" in not_run
    assert markdown.count(SKIP_REASON) == 1
    failed = markdown.split("## Skipped and failed cells")[1].split("\n## ")[0]
    assert "No other cell failed or was skipped. Configurations that ran nowhere are listed" in failed
    listed = reporting.not_run_configs(all_failed_frame()).set_index("backend")
    assert listed.loc["eager", "statuses"] == "oom ×4"
    assert "8×512: CUDA out of memory at 8x512" in listed.loc["eager", "reason"].split("\n")


def test_unstable_cells_are_listed_with_their_reasons_and_marked_in_tables_and_heatmap():
    frame = issue10_frame()
    markdown = reporting.markdown_summary(frame, ISSUE10_ENV, BERT_BASE)
    unstable = markdown.split("## Unstable cells")[1].split("\n## ")[0]
    assert ("| dynamo:inductor fp16 | 8×128 | unstable | 31.0 % | another GPU process: pid 777 (python), 2.1 GiB "
            "| round medians spread 31 % (bound 5 %) |") in unstable
    assert "unstable" not in markdown.split("## Skipped and failed cells")[1]
    html = reporting.html_report(frame, ISSUE10_ENV, BERT_BASE, {})
    assert '<td class="unstable">unstable: 4.90 ms' in html

    heatmap, _ = reporting.speedup_heatmap(frame, ISSUE10_ENV, BERT_BASE)
    panel = next(ax for ax in heatmap.axes if ax.get_title() == "dynamo:inductor fp16")
    assert "unstable\n(2.00×)" in [t.get_text() for t in panel.texts]
    assert [p.get_hatch() for p in panel.patches if isinstance(p, Rectangle)] == ["xx"]
    ort = next(ax for ax in heatmap.axes if ax.get_title() == "onnxruntime:cuda-graph fp16")
    assert "8.90×‡\n[8.60–9.20]\n0.460 ms" in [t.get_text() for t in ort.texts]  # 2 rounds set aside
    eager = next(ax for ax in heatmap.axes if ax.get_title() == "eager fp32")
    assert "1.00×†\n[1.00–1.00]\n4.09 ms" in [t.get_text() for t in eager.texts]
    footnote = heatmap.texts[-1].get_text()
    assert "† dominated by host dispatch" in footnote and "[low–high]: bootstrap 95 % interval" in footnote
    assert "Amber hatched: unstable, never a winner" in footnote


def test_mlflow_metrics_are_logged_for_trusted_cells_only_with_their_intervals():
    metrics = mlflow_metrics(reporting.results_table(issue10_frame(), ISSUE10_ENV, BERT_BASE))
    engine = "onnxruntime.cuda-graph/fp16"
    assert metrics[f"speedup/{engine}/b1_s128"]["value"] == 8.9
    assert metrics[f"speedup_ci_low/{engine}/b1_s128"]["value"] == 8.6
    assert metrics[f"speedup_ci_high/{engine}/b1_s128"]["value"] == 9.2
    assert metrics[f"p50_ci_low_ms/{engine}/b1_s128"]["value"] == pytest.approx(4.09 / 9.2)
    assert metrics[f"p50_ci_high_ms/{engine}/b1_s128"]["value"] == pytest.approx(4.09 / 8.6)
    assert metrics[f"round_spread/{engine}/b1_s128"]["value"] == 0.02
    assert metrics["dispatch_share/eager.default/fp32/b1_s128"]["value"] == 0.7
    assert "speedup/dynamo.inductor/fp16/b1_s128" in metrics
    assert not [key for key in metrics if "dynamo.inductor/fp16/b8_s128" in key]  # unstable: no metric
    assert not [key for key in metrics if "tensorrt" in key]
    assert metrics["cells/unstable"]["value"] == 1.0


def test_the_report_pipeline_logs_only_trusted_cells_to_a_real_mlflow_store(tmp_path):
    import mlflow
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner
    from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset

    from bench_pipeline.pipelines.report import create_pipeline

    frame = issue10_frame()
    backends = sorted(frame["backend"].unique())
    catalog = DataCatalog({
        "environment": MemoryDataset(ISSUE10_ENV), "model_info": MemoryDataset(BERT_BASE),
        **{f"results_{b}": MemoryDataset(frame[frame["backend"] == b]) for b in backends},
        **{name: MemoryDataset() for name in ("results", "results_csv", "benchmark_metrics", "report_figures",
                                              "report_html", "report_md")},
    })
    SequentialRunner().run(create_pipeline(backends), catalog)
    assert "Best trustworthy speedup over FP32 eager: 8.90× [8.60–9.20]" in catalog.load("report_md")

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run() as run:
        MlflowMetricsHistoryDataset(prefix="").save(catalog.load("benchmark_metrics"))
    logged = mlflow.get_run(run.info.run_id).data.metrics
    assert logged["speedup_ci_high/onnxruntime.cuda-graph/fp16/b8_s128"] == 9.2
    assert logged["round_spread/dynamo.inductor/fp16/b1_s128"] == 0.01
    assert not [key for key in logged if key.endswith("dynamo.inductor/fp16/b8_s128")]  # the unstable cell
    assert logged["cells/unstable"] == 1.0


def test_lower_precisions_show_their_speedup_beside_their_accuracy_cost():
    """INT8/FP8 rows: the speedup next to cosine and max abs in one place; quantize_s counted as a one-off cost."""
    rows = [measured("eager", "default", "fp32", 8, 512, 31.0, cosine=1.0),
            measured("onnxruntime", "cuda", "int8", 8, 512, 10.0, speedup=3.1, speedup_ci_low=3.0,
                     speedup_ci_high=3.2, cosine=0.9712, max_abs=0.83, quantize_s=41.5),
            measured("dynamo", "inductor", "fp8", 8, 512, 8.0, speedup=3.9, cosine=0.9921, max_abs=0.31)]
    figures, notes = reporting.draw_all(to_frame(rows), GPU_ENV, BERT_BASE)  # the cost figure has a colour for it
    assert "cost_break_even.png" in figures, notes
    markdown = reporting.markdown_summary(to_frame(rows), GPU_ENV, BERT_BASE)
    section = markdown.split("## Speed gained and accuracy paid")[1].split("\n## ")[0]
    assert "3.10× [3.00–3.20] · cos 0.9712 · maxΔ 8.3e-01" in section
    assert "cos 0.9921 · maxΔ 3.1e-01" in section
    assert "eager fp32" not in section  # the baseline pays nothing and gains nothing
    assert "| onnxruntime:cuda int8 | 41.50 |" in markdown.split("## Cost to get there")[1].split("\n## ")[0]


def test_no_accuracy_section_for_an_fp32_only_run():
    rows = [measured("eager", "default", "fp32", 8, 512, 31.0, cosine=1.0)]
    assert "Speed gained and accuracy paid" not in reporting.markdown_summary(to_frame(rows), GPU_ENV, BERT_BASE)
