"""Reports from the results frame, free of Kedro: tables, roofline, figures, Markdown, HTML.

The report pipeline's nodes are thin wiring over these functions.
"""

from bench_pipeline.reporting.figures import (
    FIGURE_TITLES,
    cost_break_even,
    draw_all,
    latency_vs_batch,
    speedup_heatmap,
)
from bench_pipeline.reporting.generation_figures import (
    GENERATION_FIGURE_TITLES,
    draw_generation,
    generation_speedup,
    generation_ttft,
    generation_vs_batch,
)
from bench_pipeline.reporting.html import html_report
from bench_pipeline.reporting.markdown import markdown_summary
from bench_pipeline.reporting.roofline import GPU_PEAKS, add_roofline, forward_flops, gpu_peak, roofline_basis
from bench_pipeline.reporting.tables import (
    add_speedup,
    break_even,
    decide_winner,
    failures,
    not_run_configs,
    results_table,
    unstable_cells,
    winners,
)

__all__ = [
    "FIGURE_TITLES",
    "GENERATION_FIGURE_TITLES",
    "GPU_PEAKS",
    "add_roofline",
    "add_speedup",
    "break_even",
    "cost_break_even",
    "decide_winner",
    "draw_all",
    "draw_generation",
    "failures",
    "forward_flops",
    "generation_speedup",
    "generation_ttft",
    "generation_vs_batch",
    "gpu_peak",
    "html_report",
    "latency_vs_batch",
    "markdown_summary",
    "not_run_configs",
    "results_table",
    "roofline_basis",
    "speedup_heatmap",
    "unstable_cells",
    "winners",
]
