"""What the GPU scripts beside this file share: run the benchmark pipeline in a Kedro
environment written for the occasion (conf/<env>/, git-ignored) and read back its results."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from bench_pipeline.backends import runnable


def run_benchmark(env: str, config: dict) -> pd.DataFrame:
    """``kedro run --pipelines=benchmark --env <env>`` with ``config`` as the environment's
    parameters (only the backends it names run: parameters merge softly, and conf/base's dynamo and TensorRT
    variants would otherwise compile and build too: DeBERTa's first H200 try ran 7 minutes with them on
    and measured nothing);
    its output goes to ``data/<env>.log`` as it runs (a run stopped by a timeout still
    says where it was), the last of it is printed, and ``results.parquet`` is returned."""
    backends = config["benchmark"].setdefault("backends", {})
    for name in runnable():
        backends.setdefault(name, {"enabled": False})
    Path(f"conf/{env}").mkdir(exist_ok=True)
    Path(f"conf/{env}/parameters_benchmark.yml").write_text(yaml.safe_dump(config))
    results = Path("data/08_reporting/results.parquet")
    results.unlink(missing_ok=True)  # a run that dies must not hand back the previous run's table
    log = Path(f"data/{env}.log")
    with log.open("w") as out:
        done = subprocess.run([sys.executable, "-m", "kedro", "run", "--pipelines=benchmark", "--env", env],
                              stdout=out, stderr=subprocess.STDOUT, env=os.environ | {"KEDRO_DISABLE_TELEMETRY": "1"})
    print(log.read_text()[-4500:])
    if done.returncode:
        sys.exit(f"kedro run --env {env} failed (exit {done.returncode}); its output is in {log}")
    pd.set_option("display.width", 250)
    return pd.read_parquet(results)
