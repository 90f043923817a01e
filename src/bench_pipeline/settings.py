"""Project settings. There is no need to edit this file unless you want to change values
from the Kedro defaults. For further information, including these default values, see
https://docs.kedro.org/en/stable/configure/configuration_basics/#configuration"""

# Instantiated project hooks.
# For example, after creating a hooks.py and defining a ProjectHooks class there, do
import os

from omegaconf.resolvers import oc

from bench_pipeline.config_loader import NamedFileConfigLoader
from bench_pipeline.hooks import BenchMlflowHook

# An MLflow server that does not answer should fail a run in seconds, not after minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

# kedro-mlflow's hook, extended (see hooks.py); so its own instance is not registered as well.
HOOKS = (BenchMlflowHook(),)
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-mlflow", "kedro_mlflow")  # the distribution's name, as either spelling

# Class that manages the KedroSession.
# from kedro.framework.session import KedroSession
# SESSION_CLASS = KedroSession

# Class that manages storing KedroSession data.
# from kedro.framework.session.store import BaseSessionStore
# SESSION_STORE_CLASS = BaseSessionStore
# Keyword arguments to pass to the `SESSION_STORE_CLASS` constructor.
# SESSION_STORE_ARGS = {
#     "path": "./sessions"
# }

# Directory that holds configuration.
# CONF_SOURCE = "conf"

# Class that manages how configuration is loaded.
# Kedro's OmegaConfigLoader; a YAML error names its file.
CONFIG_LOADER_CLASS = NamedFileConfigLoader

# Keyword arguments to pass to the `CONFIG_LOADER_CLASS` constructor.
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # ${oc.env:NAME,default} outside credentials too: mlflow.yml lets MLFLOW_TRACKING_URI win over its default
    "custom_resolvers": {"oc.env": oc.env},
    # "config_patterns": {
    #     "spark" : ["spark*/"],
    #     "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
    # }
}

# Class that manages Kedro's library components.
# from kedro.framework.context import KedroContext
# CONTEXT_CLASS = KedroContext

# Class that manages the Data Catalog.
# from kedro.io import DataCatalog
# DATA_CATALOG_CLASS = DataCatalog
