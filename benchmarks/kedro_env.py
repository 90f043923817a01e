"""What the GPU scripts beside this file share: run the benchmark pipeline in a Kedro
environment written for the occasion (conf/<env>/, git-ignored) and read back its results."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml


def run_benchmark(env: str, config: dict) -> pd.DataFrame:
    """``kedro run --pipelines=benchmark --env <env>`` with ``config`` as the environment's
    parameters; prints the run's last output and returns ``results.parquet``."""
    Path(f"conf/{env}").mkdir(exist_ok=True)
    Path(f"conf/{env}/parameters_benchmark.yml").write_text(yaml.safe_dump(config))
    run = subprocess.run([sys.executable, "-m", "kedro", "run", "--pipelines=benchmark", "--env", env],
                         capture_output=True, text=True, env=os.environ | {"KEDRO_DISABLE_TELEMETRY": "1"})
    print(run.stdout[-1500:], run.stderr[-3000:])
    pd.set_option("display.width", 250)
    return pd.read_parquet("data/08_reporting/results.parquet")
