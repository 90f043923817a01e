"""The README's commands are the ones a user copies: they must run as written, without warnings."""

import re

from conftest import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()


def test_readme_commands_use_pipelines_not_the_deprecated_pipeline():
    commands = [line for line in README.splitlines() if "kedro run" in line]
    assert len(commands) >= 3
    assert [c for c in commands if re.search(r"--pipeline\b", c)] == []  # Kedro warns on --pipeline
    assert "bash scripts/setup.sh && . .venv/bin/activate && kedro run --pipelines=benchmark" in commands
