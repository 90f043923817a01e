"""Kedro's config loader, with YAML errors that name their file.

Kedro reads each file from a string buffer, so an error it does not catch itself (a key listed
twice in a mapping) says ``in "<file>", line 9``: in which of a dozen files? Here that error is
raised again from the file that holds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf


class NamedFileConfigLoader(OmegaConfigLoader):
    def __getitem__(self, key: str) -> dict[str, Any]:
        try:
            return super().__getitem__(key)
        except yaml.MarkedYAMLError as error:
            named = _same_error_in_a_file(error, Path(self.conf_source))
            if named is None:
                raise
            raise named from None


def _same_error_in_a_file(error: yaml.MarkedYAMLError, conf_source: Path) -> yaml.MarkedYAMLError | None:
    """Read the config files again, by name this time, until one fails the same way."""
    if not conf_source.is_dir():  # remote configuration: leave Kedro's error as it is
        return None
    for path in sorted(p for p in conf_source.rglob("*") if p.suffix in (".yml", ".yaml", ".json") and p.is_file()):
        try:
            OmegaConf.load(path)
        except yaml.MarkedYAMLError as again:
            if again.problem == error.problem and again.problem_mark.line == error.problem_mark.line:
                return again
    return None
