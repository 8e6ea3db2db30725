"""docs/rl_quickstart.md is executable: its ```bash commands (CPU-sized) run here, in order, from the repo root."""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import ROOT
from tests.cli.test_readme import _env

DOC = ROOT / "docs" / "rl_quickstart.md"


def quickstart_commands() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    return [line.strip() for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M)
            for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_quickstart_has_the_cpu_ppo_command():
    assert any(c.startswith("make ppo PROFILE=cpu") for c in quickstart_commands())


@pytest.mark.slow
@pytest.mark.distributed
def test_quickstart_commands_run():
    for command in quickstart_commands():
        proc = subprocess.run(command, shell=True, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, f"`{command}` exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert (ROOT / "outputs/cpu/ppo-lora/adapter_config.json").is_file()
    assert (ROOT / "outputs/cpu/ppo-lora/metrics.jsonl").is_file()
