"""The user-facing surface: `medqa --help`, `make help`, and an idempotent `make setup`."""

import re
import subprocess

from conftest import ROOT, run_cli
from medqa.cli import COMMANDS


def _make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True)


def test_medqa_help_lists_every_command():
    out = run_cli("--help").stdout
    for name in COMMANDS:
        assert re.search(rf"^\s+{re.escape(name)}\s+\S", out, re.M), name
    assert run_cli("no-such-command", check=False).returncode == 2


def test_every_command_module_exists_and_has_main():
    import importlib

    for name, (module, _) in COMMANDS.items():
        assert callable(importlib.import_module(module).main), name


def test_make_help_lists_every_target_with_one_line():
    makefile = (ROOT / "Makefile").read_text()
    targets = {m.group(1) for m in re.finditer(r"^([a-zA-Z][\w-]*):(?!=)", makefile, re.M)}
    documented = {m.group(1) for m in re.finditer(r"^([a-zA-Z][\w-]*):.*## ", makefile, re.M)}
    assert targets == documented, f"targets without a '## help' line: {sorted(targets - documented)}"
    out = _make("help").stdout
    for t in targets:
        assert re.search(rf"^\s+{re.escape(t)}\s+\S", out, re.M), t


def test_make_setup_is_a_no_op_when_nothing_changed():
    # `make -q` exits 0 only when the target is up to date: nothing would be installed.
    assert _make("-q", "setup").returncode == 0
    proc = _make("setup")
    assert proc.returncode == 0 and "pip install" not in proc.stdout
