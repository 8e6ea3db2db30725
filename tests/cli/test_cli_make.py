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
    from medqa.cli import entry_point

    for name in COMMANDS:
        assert callable(entry_point(name)), name


def test_medqa_help_and_make_help_group_by_pipeline_stage():
    from medqa.commands.stages import STAGES

    makefile = (ROOT / "Makefile").read_text()
    targets = {m.group(1) for m in re.finditer(r"^([a-zA-Z][\w-]*):(?!=)", makefile, re.M)}
    staged_targets = [t for s in STAGES for t in s.targets]
    staged_commands = [c for s in STAGES for c in s.commands]
    assert sorted(staged_targets) == sorted(targets), "every make target in exactly one stage of medqa/commands/stages.py"
    assert sorted(staged_commands) == sorted(COMMANDS), "every command in exactly one stage of medqa/commands/stages.py"
    make_out, cli_out = _make("help").stdout, run_cli("--help").stdout
    for out, field in ((make_out, "targets"), (cli_out, "commands")):
        positions = [out.index(f"{s.name}:\n") for s in STAGES if getattr(s, field)]
        assert positions == sorted(positions), f"stages out of pipeline order in {field}"
    # SFT before RL, PPO before the benchmarks: pipeline order, not file order
    assert make_out.index("  sft-lora ") < make_out.index("  ppo ") < make_out.index("  grpo ") < make_out.index("  bench ")
    for stage in ("sft", "ppo", "grpo", "eval", "predict", "serve", "demo", "pretrain", "merge"):
        assert re.search(rf"^\s+{stage}\s+\S", cli_out, re.M), stage


def test_tiny_model_pretrain_is_still_the_pretrain_command():
    proc = run_cli("tiny-model", "--pretrain", "--help")
    assert proc.returncode == 0 and "medqa pretrain" in proc.stdout and "--train-file" in proc.stdout


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
