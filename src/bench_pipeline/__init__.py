"""bench_pipeline
"""

__version__ = "0.1"
