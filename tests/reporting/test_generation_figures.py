"""The generation scenario's figures on a realistic generation frame built with ``results.make_row``: the series
each figure draws (which configurations, which cells, which numbers), unstable cells marked, other cells left
out, and the figures in the Markdown report."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bench_pipeline import reporting  # noqa: E402
from bench_pipeline.harness.results import make_row, to_frame  # noqa: E402
from bench_pipeline.reporting.figures import UNSTABLE_EDGE  # noqa: E402
from bench_pipeline.reporting.formatting import config_label  # noqa: E402
from bench_pipeline.reporting.tables import UNPAIRED_MARK  # noqa: E402

ENV = {"gpu.name": "NVIDIA H200", "cpu.model": "Intel Xeon"}
GPT2 = {"name": "gpt2 (random weights)", "model_type": "gpt2", "num_parameters": 124_439_808}
NEW_TOKENS = 64
# (backend, variant, precision) -> per-token decode ms at batch 1; the others scale from it
CONFIGS = {("eager", "default", "fp32"): 5.6, ("eager", "static-cache", "fp32"): 5.0,
           ("onnxruntime", "cuda", "fp16"): 2.9, ("onnxruntime", "cuda-no-cache", "fp16"): 3.5}
BATCHES, PROMPTS = (1, 8), (128, 512)
UNSTABLE_CELL = (("onnxruntime", "cuda-no-cache", "fp16"), 8, 512)
FAILED_CELL = (("eager", "static-cache", "fp32"), 1, 512)
UNPAIRED_CELL = (("onnxruntime", "cuda", "fp16"), 8, 128)


def numbers(config, batch, prompt):
    tpot = CONFIGS[config] * (1 + 0.05 * batch) * (1 + prompt / 2048)
    ttft = tpot * (1 + prompt / 64)
    p50 = ttft + tpot * (NEW_TOKENS - 1)
    speedup = None if config == ("eager", "default", "fp32") else (
        numbers(("eager", "default", "fp32"), batch, prompt)["p50_ms"] / p50)
    return {"tpot_p50_ms": tpot, "ttft_ms": ttft, "p50_ms": p50, "speedup": speedup}


def row(config, batch, prompt):
    n = numbers(config, batch, prompt)
    status, reason = "ok", None
    if (config, batch, prompt) == UNSTABLE_CELL:
        status, reason = "unstable", "round medians spread 31 % > 10 %"
    if (config, batch, prompt) == FAILED_CELL:
        status, reason = "fail_accuracy", "generated ids differ from FP32 eager greedy from step 3 of 64"
    speedup = {} if n["speedup"] is None else {
        "speedup": n["speedup"], "speedup_ci_low": n["speedup"] * 0.95, "speedup_ci_high": n["speedup"] * 1.04}
    backend, variant, precision = config
    return make_row(
        model="gpt2", backend=backend, variant=variant, precision=precision, batch=batch, seq=prompt,
        status=status, reason=reason, device="cuda:0", threads=16, new_tokens=NEW_TOKENS,
        p50_ms=n["p50_ms"], p50_ci_low_ms=n["p50_ms"] * 0.98, p50_ci_high_ms=n["p50_ms"] * 1.03,
        p90_ms=n["p50_ms"] * 1.05, p99_ms=n["p50_ms"] * 1.1, mean_ms=n["p50_ms"],
        throughput_tok_s=batch * NEW_TOKENS * 1000 / n["p50_ms"],
        ttft_ms=n["ttft_ms"], ttft_ci_low_ms=n["ttft_ms"] * 0.9, ttft_ci_high_ms=n["ttft_ms"] * 1.2,
        tpot_p50_ms=n["tpot_p50_ms"], tpot_p50_ci_low_ms=n["tpot_p50_ms"] * 0.97,
        tpot_p50_ci_high_ms=n["tpot_p50_ms"] * 1.02, tpot_p90_ms=n["tpot_p50_ms"] * 1.1,
        tpot_p99_ms=n["tpot_p50_ms"] * 1.3, tpot_mean_ms=n["tpot_p50_ms"], kv_cache="dynamic",
        tokens_match=True, cosine=1.0, setup_s=1.0,
        extra=json.dumps({"speedup_paired": (config, batch, prompt) != UNPAIRED_CELL}),
        **speedup,
    )


def generation_frame() -> pd.DataFrame:
    rows = [row(c, b, s) for c in CONFIGS for b in BATCHES for s in PROMPTS]
    rows += [make_row(model="gpt2", backend="tensorrt", variant="default", precision="fp16", batch=b, seq=s,
                      status="skipped", reason="TensorRT generation is not built in this project", device="cuda:0")
             for b in BATCHES for s in PROMPTS]
    return to_frame(rows)


@pytest.fixture(scope="module")
def drawn():
    return reporting.draw_generation(generation_frame(), ENV, GPT2)


def series(ax):
    """{label: (x, y)} of the ok lines in one panel (unstable points carry no label of their own)."""
    return {c.get_label(): (c.lines[0].get_xdata(), c.lines[0].get_ydata())
            for c in ax.containers if not c.get_label().startswith("_")}


def unstable_rings(ax):
    return [line for line in ax.get_lines()
            if line.get_markeredgecolor() == UNSTABLE_EDGE and line.get_markerfacecolor() == "none"]


def legend_labels(figure: Figure) -> list[str]:
    return [t.get_text() for t in figure.legends[0].get_texts()]


LABELS = [config_label(*c) for c in CONFIGS]


def test_every_generation_figure_is_drawn_and_titled_with_model_and_gpu(drawn):
    figures, notes = drawn
    assert notes == {} and set(figures) == set(reporting.GENERATION_FIGURE_TITLES)
    for figure in figures.values():
        assert GPT2["name"] in figure.get_suptitle() and "NVIDIA H200" in figure.get_suptitle()
        assert "tensorrt fp16" not in legend_labels(figure)  # skipped everywhere: nothing to draw
        assert "5 cell(s) neither ok nor unstable are not drawn" in figures_title(figure)  # 4 skipped + 1 fail


def figures_title(figure: Figure) -> str:
    return figure.legends[0].get_title().get_text()


def test_tokens_per_s_and_per_token_latency_against_batch_per_prompt(drawn):
    figure = drawn[0]["generation_vs_batch.png"]
    top, bottom = figure.axes[:2], figure.axes[2:]
    assert [ax.get_title() for ax in top] == ["prompt 128 tokens", "prompt 512 tokens"]
    assert top[0].get_ylabel() == "generated tokens/s (log)" and bottom[0].get_ylabel() == "per-token p50 ms (log)"
    assert all(ax.get_xlabel() == "batch size" for ax in bottom) and all(ax.get_yscale() == "log" for ax in figure.axes)
    assert legend_labels(figure) == [*LABELS, "hollow, ringed amber: unstable (never trusted)"]
    frame = generation_frame().set_index(["backend", "variant", "precision", "batch", "seq"])
    for ax, column in ((top[0], "throughput_tok_s"), (bottom[0], "tpot_p50_ms")):
        lines = series(ax)
        assert set(lines) == set(LABELS)
        x, y = lines["eager fp32"]
        np.testing.assert_allclose(y, [frame.loc[("eager", "default", "fp32", b, 128), column] for b in BATCHES])
        np.testing.assert_allclose(x, BATCHES, rtol=0.1)  # the small shift that keeps error bars apart
    # the fail_accuracy cell (static cache, batch 1, prompt 512) is not drawn; the unstable one is, hollow
    static = series(bottom[1])[config_label("eager", "static-cache", "fp32")]
    assert len(static[0]) == 1 and static[0][0] == pytest.approx(8, rel=0.1)
    no_cache = config_label("onnxruntime", "cuda-no-cache", "fp16")
    assert len(series(bottom[1])[no_cache][0]) == 1  # its batch 8 point is off the line
    (ring,) = unstable_rings(bottom[1])
    assert list(ring.get_ydata()) == [pytest.approx(frame.loc[("onnxruntime", "cuda-no-cache", "fp16", 8, 512),
                                                              "tpot_p50_ms"])]
    assert unstable_rings(bottom[0]) == []  # prompt 128 has no unstable cell


def test_ttft_against_prompt_length_per_batch_with_intervals(drawn):
    figure = drawn[0]["generation_ttft.png"]
    assert [ax.get_title() for ax in figure.axes] == ["batch 1", "batch 8"]
    assert figure.axes[0].get_xlabel() == "prompt length (tokens)"
    assert figure.axes[0].get_ylabel() == "time to first token ms (log)"
    frame = generation_frame().set_index(["backend", "variant", "precision", "batch", "seq"])
    x, y = series(figure.axes[0])["eager fp32"]
    np.testing.assert_allclose(x, PROMPTS, rtol=0.1)
    np.testing.assert_allclose(y, [frame.loc[("eager", "default", "fp32", 1, s), "ttft_ms"] for s in PROMPTS])
    container = next(c for c in figure.axes[0].containers if c.get_label() == "eager fp32")
    (bars,) = container.lines[2]  # the vertical error bars: the bootstrap interval of each point
    low, high = bars.get_segments()[0][:, 1]
    assert low == pytest.approx(y[0] * 0.9) and high == pytest.approx(y[0] * 1.2)


def test_speedup_over_eager_with_intervals_leaves_the_baseline_out_and_marks_unpaired(drawn):
    figure = drawn[0]["generation_speedup.png"]
    assert [ax.get_title() for ax in figure.axes] == ["prompt 128 tokens", "prompt 512 tokens"]
    assert legend_labels(figure)[:3] == LABELS[1:]  # no baseline series: it is the dashed 1×
    assert "dashed: FP32 eager (1×)" in figures_title(figure) and "not paired round by round" in figures_title(figure)
    ax = figure.axes[0]
    assert any(list(line.get_ydata()) == [1.0, 1.0] and line.get_linestyle() == "--" for line in ax.get_lines())
    x, y = series(ax)[config_label("onnxruntime", "cuda", "fp16")]
    expected = [numbers(("onnxruntime", "cuda", "fp16"), b, 128)["speedup"] for b in BATCHES]
    np.testing.assert_allclose(y, expected)
    assert [t.get_text() for t in ax.texts] == [UNPAIRED_MARK]


def test_a_forward_run_gets_no_generation_figures_and_a_missing_column_a_note():
    forward = generation_frame().drop(columns=["ttft_ms"]).assign(ttft_ms=np.nan)
    assert reporting.draw_generation(forward, ENV, GPT2) == ({}, {})
    no_decode = generation_frame().assign(tpot_p50_ms=np.nan)
    figures, notes = reporting.draw_generation(no_decode, ENV, GPT2)
    assert set(figures) == {"generation_ttft.png", "generation_speedup.png"}
    assert "['tpot_p50_ms']" in notes["generation_vs_batch.png"]


def test_markdown_report_shows_the_generation_figures_in_their_section(drawn):
    frame = generation_frame()
    figures, notes = reporting.draw_all(frame, ENV, GPT2)
    figures |= drawn[0]
    markdown = reporting.markdown_summary(frame, ENV, GPT2, {name: f"figures/{name}" for name in figures}, notes)
    section = markdown.split("## Generation figures", 1)[1].split("\n## ", 1)[0]
    for name, caption in reporting.GENERATION_FIGURE_TITLES.items():
        assert f"![{caption}](figures/{name})" in section
    html = reporting.html_report(frame, ENV, GPT2, figures, notes)
    assert html.count("data:image/png") == len(figures)
