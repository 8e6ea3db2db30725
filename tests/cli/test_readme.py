"""The README is executable truth: every command in its ```bash blocks runs here, in order, from the repo root.

`make test` is CI's own command (running it here would recurse). Servers (`make serve`, `make teacher-serve`)
are started, must answer on their port, and are stopped.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import ROOT

SELF = {"make test"}
# Not run here, with the reason: commands that need something this machine is not.
EXCLUDED = {
    "make test-slurm": "tests/slurm/test_slurm.py, which `make test` runs itself",
    "make demo": "tests/eval/test_demo.py, which checks what it writes",
}


def needs_gpu_cluster(command: str) -> bool:
    """`sbatch … --gpus-per-node=8 …`: a real Slurm cluster with GPUs. The same templates run under real sbatch on
    the local two-node cluster in tests/slurm/test_slurm.py (PROFILE=cpu)."""
    return command.split()[0] != "make" and " sbatch " in f" {command} " and "--gpus-per-node" in command


SERVERS = {"make serve": "http://127.0.0.1:7860/", "make teacher-serve": "http://127.0.0.1:8765/health"}


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DEEPSEEK_API_KEY", "MEDQA_TEACHER_API_KEY")}
    env.pop("MAKEFLAGS", None)
    env.pop("MAKELEVEL", None)
    return env


def test_readme_has_the_two_fresh_machine_commands():
    commands = readme_commands()
    assert "make demo" in commands and "make test" in commands


def _wait_for(url: str, proc: subprocess.Popen, log, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"nothing answered on {url} within {timeout:.0f} s")


def _server_url(command: str) -> str | None:
    """The URL a server command answers on, matched by its first two words (`make serve MODEL=…`)."""
    return SERVERS.get(" ".join(command.split()[:2]))


@pytest.mark.slow
@pytest.mark.parametrize(
    "command", [c for c in readme_commands() if c not in SELF | EXCLUDED.keys() and not needs_gpu_cluster(c)]
)
def test_readme_command_runs(command, tmp_path):
    url = _server_url(command)
    if url:
        log = tmp_path / "server.log"  # a file, not a pipe: a chatty server must never block on a full pipe
        with open(log, "w") as out:
            proc = subprocess.Popen(command, shell=True, cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            _wait_for(url, proc, log, timeout=300)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        return
    proc = subprocess.run(command, shell=True, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"`{command}` exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
