"""Edges that must fail cleanly or keep secrets: recipe value types, the RL prompt length cap, the teacher key and
URL credentials in every printed form, `medqa demo`'s output folders, and `serve`'s history cap."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT
from medqa.runs.io import InputError, write_jsonl

# ---------------------------------------------------------------- recipe values against the field types


def _ppo_parse(argv):
    from medqa.train.ppo.config import parse_args

    return parse_args(argv)


def _grpo_parse(argv):
    from medqa.train.grpo import parse_args

    return parse_args(argv)


def _sft_parse(argv):
    from medqa.train.sft import parse_args

    return parse_args(argv)


PARSERS = {"ppo": _ppo_parse, "grpo": _grpo_parse, "sft": _sft_parse}


def _recipe(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("stage, key, value, expected", [
    ("ppo", "ppo_epochs", "1.5", "expected int, got 1.5"),
    ("ppo", "max_new_tokens", "[24]", "expected int, got [24]"),
    ("ppo", "teacher_base_url", "12345", "expected str or None, got 12345"),
    ("ppo", "batch_size", "4.5", "expected int, got 4.5"),
    ("ppo", "enable_thinking", "1", "expected bool, got 1"),
    ("ppo", "lora_target_modules", "[1, 2]", "expected list of str or None, got [1, 2]"),
    ("grpo", "teacher_base_url", "12345", "expected str or None, got 12345"),
    ("grpo", "num_generations", "2.5", "expected int or None, got 2.5"),
    ("grpo", "reward_weights", "{a: 1}", "expected list of float or None, got {'a': 1}"),
    ("sft", "learning_rate", "[0.001]", "expected float, got [0.001]"),
    ("sft", "optim", "3", "expected one of 'adamw_torch'"),
])
def test_a_recipe_value_of_the_wrong_type_is_a_one_line_error_at_parse_time(tmp_path, stage, key, value, expected):
    recipe = _recipe(tmp_path, f"# a recipe\nmodel_name_or_path: models/none\n{key}: {value}\n")
    with pytest.raises(InputError) as e:
        PARSERS[stage](["--config", str(recipe)])
    assert str(e.value).startswith(f"{recipe}:3: {key}: {expected}")


def test_a_wrong_value_in_a_base_recipe_names_that_file_and_line(tmp_path):
    base = _recipe(tmp_path, "seed: 1\nppo_epochs: 1.5\n", "base.yaml")
    recipe = _recipe(tmp_path, "base: base.yaml\nmodel_name_or_path: models/none\n")
    with pytest.raises(InputError, match=rf"^{base}:2: ppo_epochs: expected int, got 1.5$"):
        _ppo_parse(["--config", str(recipe)])


def test_recipe_values_the_parser_accepts_still_pass(tmp_path):
    recipe = _recipe(tmp_path, "\n".join([
        "model_name_or_path: models/none",
        "learning_rate: 1",  # an int where a float is expected
        "init_kl_coef: 5e-2",  # YAML reads this as a string; the parser converts it
        "target_kl: null",  # Optional
        "lora_target_modules: [q_proj, v_proj]",
        "enable_thinking: false",
        "kl_estimator: k3",
        "teacher_base_url: http://127.0.0.1:9/v1",
    ]) + "\n")
    model, cfg, teacher = _ppo_parse(["--config", str(recipe)])
    assert cfg.learning_rate == 1 and cfg.init_kl_coef == 0.05 and cfg.target_kl is None
    assert model.lora_target_modules == ["q_proj", "v_proj"] and cfg.enable_thinking is False
    assert teacher.teacher_base_url == "http://127.0.0.1:9/v1"


def test_every_shipped_recipe_passes_the_type_check():
    from medqa.runs.recipes import _load_recipe, check_recipe_types

    stages = {"ppo": ("medqa.train.ppo.config", ("PPOModelArguments", "PPOConfig", "TeacherArgs")),
              "grpo": ("medqa.train.grpo", ("GRPOScriptArguments", "MedqaGRPOConfig", "GRPOModelArguments", "TeacherArgs")),
              "sft": ("medqa.train.sft", ("SFTScriptArguments", "MedqaSFTConfig", "SFTModelArguments"))}
    import importlib

    recipes = sorted((ROOT / "recipes").rglob("*.yaml"))
    assert len(recipes) > 10
    for path in recipes:
        module, names = stages[path.relative_to(ROOT / "recipes").parts[0]]
        mod = importlib.import_module(module)
        config, origins = _load_recipe(path, ())
        check_recipe_types(tuple(getattr(mod, n) for n in names), config, origins)


def test_the_ppo_script_refuses_a_bad_recipe_value_in_one_line_before_loading_a_model(tmp_path):
    recipe = _recipe(tmp_path, "base: " + str(ROOT / "recipes/ppo/cpu/lora.yaml") + "\nppo_epochs: 1.5\n")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/ppo.py"), "--config", str(recipe),
                           "--model_name_or_path", str(tmp_path / "no-such-model")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert f"ppo: {recipe}:2: ppo_epochs: expected int, got 1.5" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- the RL prompt length cap


def _prompts(tmp_path: Path, long_chars: int = 200_000) -> Path:
    path = tmp_path / "prompts.jsonl"
    rows = [{"id": f"p{i}", "prompt": [{"role": "user", "content": q}], "question": q, "meta": {}}
            for i, q in enumerate(["头痛怎么办？", "咳嗽" * (long_chars // 2), "发热三天了。"])]
    write_jsonl(path, rows)
    return path


def test_an_rl_prompt_over_max_prompt_length_is_an_error_naming_its_line(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    from medqa.data.rl_prompts import load_rl_prompts, prompt_token_counter

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    path = _prompts(tmp_path)
    started = time.perf_counter()
    with pytest.raises(InputError, match=rf"^{path}:2: prompt: \d+ tokens with the chat template, over "
                                         r"max_prompt_length 256"):
        load_rl_prompts(path, max_prompt_length=256, count_tokens=prompt_token_counter(tok))
    assert time.perf_counter() - started < 5
    ok = load_rl_prompts(path, limit=1, max_prompt_length=256, count_tokens=prompt_token_counter(tok))
    assert [r["id"] for r in ok] == ["p0"]  # rows past `limit` are not read


def test_ppo_refuses_an_overlong_prompt_instead_of_cutting_it(tmp_path, tiny_model_dir):
    from medqa.train.ppo.config import PPOConfig, PPOModelArguments
    from medqa.train.ppo.trainer import PPOTrainer

    model_args = PPOModelArguments(model_name_or_path=str(tiny_model_dir), mode="lora", lora_r=4, lora_alpha=8)
    cfg = PPOConfig(output_dir=str(tmp_path / "out"), prompts_file=str(_prompts(tmp_path, 2_000)), total_steps=1,
                    batch_size=2, mini_batch_size=1, forward_batch_size=2, ppo_epochs=1, max_new_tokens=2,
                    max_prompt_length=256, report_to="none", progress_bar=False, cpu_threads=1, reward="rules")
    with pytest.raises(InputError, match=r":2: prompt: \d+ tokens .* over max_prompt_length 256"):
        PPOTrainer(model_args, cfg, reward_fn=lambda q, a, m: [0.0] * len(a))


def test_grpo_refuses_an_overlong_prompt_before_loading_the_policy(tmp_path, tiny_model_dir, monkeypatch):
    import medqa.train.grpo as grpo

    monkeypatch.setattr(grpo, "load_policy", lambda *a, **k: pytest.fail("the policy was loaded"))
    script, config, model, _ = grpo.parse_args([
        "--config", str(ROOT / "recipes/grpo/cpu/lora.yaml"), "--model_name_or_path", str(tiny_model_dir),
        "--mode", "full", "--prompts_file", str(_prompts(tmp_path, 2_000)), "--output_dir", str(tmp_path / "out"),
        "--report_to", "none", "--max_prompt_length", "256"])
    with pytest.raises(InputError, match=r":2: prompt: \d+ tokens .* over max_prompt_length 256"):
        grpo.build_trainer(script, config, model, reward_funcs=[grpo.rules])


# ---------------------------------------------------------------- the key and URL credentials


def test_public_url_drops_credentials_and_keeps_the_endpoint():
    from medqa.teacher.setup import public_url

    assert public_url("http://user:s3cr3t-token@judge.example:8000/v1?key=abc#x") == "http://judge.example:8000/v1"
    assert public_url("https://api.deepseek.com/v1/chat/completions") == "https://api.deepseek.com/v1/chat/completions"


def test_a_base_url_with_credentials_is_never_shown(capsys):
    from medqa.teacher.client import TeacherClient
    from medqa.teacher.setup import TeacherArgs, build_teacher

    teacher = build_teacher(TeacherArgs(teacher_base_url="http://user:s3cr3t-token@127.0.0.1:9/v1", teacher_cache=""))
    shown = teacher.describe + repr(TeacherClient(teacher.config)) + teacher.config.endpoint_id
    assert "127.0.0.1:9/v1" in teacher.describe
    assert "s3cr3t" not in shown and "user" not in shown


class _EchoKeyHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request 400 with the Authorization header's key echoed just before the 200th character."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        body = ("invalid request; " + "x" * 170 + " key=" + key).encode()
        self.send_response(400)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_an_echoed_key_is_redacted_before_the_error_body_is_cut():
    from medqa.teacher.client import Secret, TeacherConfig, score_pairs

    key = "sk-" + "0123456789abcdef" * 3
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoKeyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = TeacherConfig(base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key=Secret(key), max_retries=0,
                            timeout_s=10)
        (result,), _ = score_pairs(cfg, [("问题", "回答")])
    finally:
        server.shutdown()
    assert result.error and "HTTP 400" in result.error
    assert key[:10] not in result.error and "sk-0123" not in result.error


def test_make_never_echoes_the_credentials_of_base_url():
    url = "http://user:s3cr3t-token@judge.example:8000/v1"
    for target in ("ppo", "grpo", "teacher-check"):
        proc = subprocess.run(["make", "-n", "--no-print-directory", target, "PROFILE=cpu", f"BASE_URL={url}"],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "s3cr3t" not in proc.stdout + proc.stderr
        assert '"$BASE_URL"' in proc.stdout  # the command reads it from its environment


def test_the_slurm_log_shows_base_url_without_credentials():
    script = (ROOT / "slurm/ppo.sh").read_text(encoding="utf-8")
    logged = [line for line in script.splitlines() if "medqa_log" in line and "BASE_URL" in line]
    assert logged and all("medqa_public_url" in line for line in logged)
    proc = subprocess.run(["bash", "-c", 'source slurm/common.sh; VENV="$1"; medqa_public_url "$2"', "_",
                           str(Path(sys.executable).parent.parent), "http://u:s3cr3t@judge:8000/v1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.stdout.strip() == "http://judge:8000/v1", proc.stderr


# ---------------------------------------------------------------- medqa demo's output folders


def test_demo_out_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    from medqa.demo.pipeline import main

    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert main(["--out", str(notes)]) == 2
    err = capsys.readouterr().err
    assert "is not a folder" in err and "Traceback" not in err
    assert notes.read_text() == "mine"


def test_a_stage_folder_keeps_files_its_manifest_does_not_list(tmp_path):
    from medqa.demo.pipeline import demo_stage, fresh_stage_dir
    from medqa.runs.io import MANIFEST

    stage = tmp_path / "demo" / "ppo"
    with demo_stage(stage):
        (stage / "adapter_model.safetensors").write_text("weights")
        (stage / "checkpoint-2").mkdir()
    assert json.loads((stage / MANIFEST).read_text())["entries"] == ["adapter_model.safetensors", "checkpoint-2"]
    (stage / "notes.md").write_text("mine")  # added by the user after the run
    with pytest.raises(RuntimeError, match=r"did not write \(notes.md\)"):
        fresh_stage_dir(stage)
    assert (stage / "notes.md").read_text() == "mine" and (stage / "checkpoint-2").is_dir()  # nothing touched
    (stage / "notes.md").unlink()
    fresh_stage_dir(stage)
    assert sorted(p.name for p in stage.iterdir()) == [MANIFEST]
    # A manifest that lists nothing (an earlier demo's) does not license removing the folder's contents.
    old = tmp_path / "old" / "sft"
    old.mkdir(parents=True)
    (old / MANIFEST).write_text(json.dumps({"written_by": "medqa demo"}))
    (old / "model.safetensors").write_text("weights")
    with pytest.raises(RuntimeError, match="did not record its files"):
        fresh_stage_dir(old)
    assert (old / "model.safetensors").is_file()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie not yet reaped by whoever inherited it has ended too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_demo_stopped_by_sigterm_stops_its_stage_commands_and_lists_their_files(tmp_path):
    """SIGTERM to the demo (not to its children) ends the stage command and what it started (here a child of `sh`,
    as `accelerate launch` is of make), then lists the stage's files, so the next run can start the stage afresh."""
    from medqa.demo.pipeline import fresh_stage_dir
    from medqa.runs.io import MANIFEST

    stage, pid_file = tmp_path / "demo" / "ppo", tmp_path / "worker.pid"
    worker = ("import os, pathlib, sys, time; pathlib.Path(sys.argv[1], 'checkpoint-3').mkdir(); "
              "pathlib.Path(sys.argv[2]).write_text(str(os.getpid())); time.sleep(300)")
    script = f"""
import sys
from pathlib import Path
from medqa.demo import pipeline as demo
demo.install_sigterm_stop()
try:
    with demo.demo_stage(Path({str(stage)!r})):
        demo._run(["sh", "-c", 'python -c "$0" "$@"; echo never reached', {worker!r}, {str(stage)!r}, {str(pid_file)!r}])
except demo.StopRequested:
    sys.exit(143)
"""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.monotonic() + 60
    while not pid_file.is_file() or not pid_file.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, "the stage command did not start"
        time.sleep(0.1)
    worker_pid = int(pid_file.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert _gone(worker_pid)  # the grandchild is gone too, not left writing into the stage folder
    assert json.loads((stage / MANIFEST).read_text())["entries"] == ["checkpoint-3"]
    fresh_stage_dir(stage)  # the next run may empty it: everything there is listed as the demo's
    assert sorted(p.name for p in stage.iterdir()) == [MANIFEST]


# ---------------------------------------------------------------- serve's history cap


def test_serve_refuses_a_huge_history_fast_without_reading_it():
    from medqa.apps.serve import chat_handler
    from medqa.models.generation import GenerationSettings

    respond = chat_handler(None, None, settings=GenerationSettings(max_new_tokens=8))  # the default cap; never reaches the model
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": "胸痛" * 50_000} for i in range(40)]
    started = time.perf_counter()
    steps = list(respond("头痛怎么办？", history, True))
    assert time.perf_counter() - started < 1.0
    (shown, _, box), = steps
    assert shown == history and box == "头痛怎么办？"  # nothing added; the question stays in the box
