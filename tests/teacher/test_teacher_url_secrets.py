"""A base URL's user:password never reaches a command line or a message, and an API key plus URL credentials is
refused when the arguments are parsed (issue #31, items 8-10)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from medqa.teacher.setup import TeacherArgs, TeacherSetupError
from tests.teacher_helpers import send_chat_reply

REPO = Path(__file__).resolve().parents[2]
KEY_VARS = ("DEEPSEEK_API_KEY", "MEDQA_TEACHER_API_KEY", "MEDQA_TEACHER_BASE_URL", "BASE_URL")


def _all_command_lines() -> list[str]:
    """The argv of every process this user can see (`ps` shows the same)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace"))
            except OSError:
                continue
    return out


class AuthJudge:
    """An OpenAI-compatible judge on loopback that records, for every request, the basic-auth credentials it got
    and the command lines of all processes at that moment (the launcher and the process that sends are alive)."""

    def __init__(self):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                auth = self.headers.get("Authorization", "")
                user_pass = base64.b64decode(auth[6:]).decode() if auth.startswith("Basic ") else auth
                seen.append((user_pass, _all_command_lines()))
                content = json.dumps({"safety": 8, "reasoning": 7, "completeness": 6, "empathy": 7,
                                      "needs_emergency": False, "critique": "ok"})
                send_chat_reply(self, body["model"], content)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def __enter__(self) -> AuthJudge:
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
    env.update(PYTHONPATH=str(REPO), **extra)
    return env


@pytest.fixture
def clean_env(monkeypatch):
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# ---------------------------------------------------------------- 8: never on a command line

def test_make_teacher_check_sends_the_url_credentials_but_no_process_shows_them(tmp_path):
    """`BASE_URL=http://u:SECRET@… make teacher-check`: the judge receives u:SECRET (basic auth), and at that moment
    no process's command line (make's shell, the medqa process) holds SECRET."""
    secret = "pw-" + uuid.uuid4().hex
    with AuthJudge() as judge:
        url = f"http://tester:{secret}@127.0.0.1:{judge.port}/v1"
        proc = subprocess.run(["make", "--no-print-directory", "-o", "setup", "teacher-check", "TEACHER_N=1",
                               "TEACHER_MODEL=judge-x"], capture_output=True, text=True, cwd=REPO, timeout=300,
                              env=_env(BASE_URL=url))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert judge.seen, "the run did not reach the judge"
        for user_pass, command_lines in judge.seen:
            assert user_pass == f"tester:{secret}"  # the run used the URL, credentials included
            leaked = [c for c in command_lines if secret in c]
            assert not leaked, f"credentials visible in ps: {leaked}"
        assert secret not in proc.stdout + proc.stderr


def test_make_ppo_hands_the_url_to_the_ranks_without_a_command_line(tmp_path):
    """The real `make ppo` recipe, with a stand-in launcher that parses its arguments as a rank does
    (medqa.train.ppo.config.parse_args), builds the teacher and asks it once: the URL arrives, the password is in
    no process's command line."""
    secret = "pw-" + uuid.uuid4().hex
    launcher = tmp_path / "accelerate"
    launcher.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import sys
        from medqa.teacher.client import score_pairs
        from medqa.teacher.setup import build_teacher
        from medqa.train.ppo.config import parse_args

        argv = sys.argv[1:]
        rank_argv = argv[argv.index("scripts/ppo.py") + 1:]
        _, _, teacher_args = parse_args(rank_argv)
        with build_teacher(teacher_args) as teacher:
            (result,), _ = score_pairs(teacher.config, [("问题", "回答")])
        sys.exit(0 if result.ok else f"judgement failed: {{result.error}}")
        """))
    launcher.chmod(0o755)
    sft = tmp_path / "sft"
    sft.mkdir()
    with AuthJudge() as judge:
        url = f"http://tester:{secret}@127.0.0.1:{judge.port}/v1"
        proc = subprocess.run(["make", "--no-print-directory", "-o", "setup", "-o", "tiny-model", "-o", "rl-prompts",
                               "ppo", "PROFILE=cpu", f"SFT={sft}", f"ACCELERATE={launcher}", "TEACHER_MODEL=judge-x"],
                              capture_output=True, text=True, cwd=REPO, timeout=300, env=_env(BASE_URL=url))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert judge.seen and all(up == f"tester:{secret}" for up, _ in judge.seen)
        for _, command_lines in judge.seen:
            assert not [c for c in command_lines if secret in c]
            assert any(str(launcher) in c for c in command_lines)  # the snapshot did see the launcher
        assert secret not in proc.stdout + proc.stderr


@pytest.mark.parametrize("target", ["ppo", "grpo", "teacher-check"])
def test_make_recipes_pass_no_teacher_url_argument(target):
    url = "http://user:s3cr3t-token@judge.example:8000/v1"
    proc = subprocess.run(["make", "-n", "--no-print-directory", target, "PROFILE=cpu"], capture_output=True,
                          text=True, cwd=REPO, timeout=120, env=_env(BASE_URL=url))
    assert proc.returncode == 0, proc.stderr
    assert "s3cr3t" not in proc.stdout + proc.stderr
    assert "--teacher_base_url" not in proc.stdout and "--base-url" not in proc.stdout
    assert 'MEDQA_TEACHER_BASE_URL="$BASE_URL"' in proc.stdout
    assert "--teacher_offline" not in proc.stdout  # a URL in the environment is a configured teacher


def test_url_from_the_environment_is_the_default_and_a_flag_wins(clean_env):
    clean_env.setenv("MEDQA_TEACHER_BASE_URL", "http://u:pw@127.0.0.1:9/v1")
    assert TeacherArgs().base_url == "http://u:pw@127.0.0.1:9/v1"
    assert TeacherArgs(teacher_base_url="http://127.0.0.1:8/v1").base_url == "http://127.0.0.1:8/v1"
    from medqa.teacher.setup import build_teacher

    with build_teacher(TeacherArgs(teacher_cache="")) as teacher:
        assert teacher.config.base_url == "http://u:pw@127.0.0.1:9/v1"
        assert "pw" not in teacher.describe


def test_credentials_on_a_command_line_are_refused_without_showing_them(clean_env, capsys):
    from medqa.teacher.cli import main as teacher_main
    from medqa.teacher.setup import refuse_credentials_on_command_line

    with pytest.raises(SystemExit) as e:  # argparse: a usage error, exit 2
        teacher_main(["check", "--base-url", "http://u:s3cr3t@127.0.0.1:9/v1"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "MEDQA_TEACHER_BASE_URL" in err and "s3cr3t" not in err
    for argv in (["--teacher_base_url", "http://u:s3cr3t@h/v1"], ["--teacher_base_url=http://u:s3cr3t@h/v1"]):
        with pytest.raises(TeacherSetupError, match="MEDQA_TEACHER_BASE_URL") as e:
            refuse_credentials_on_command_line(argv)
        assert "s3cr3t" not in str(e.value)
    refuse_credentials_on_command_line(["--teacher_base_url", "http://127.0.0.1:9/v1"])  # no credentials: fine


# ---------------------------------------------------------------- 9: a bad URL is shown redacted

BAD_URLS = ["htps://user:s3cr3t@judge.example/v1", "user:s3cr3t@judge.example/v1", "ftp://user:s3cr3t@judge.example",
            "http:/user:s3cr3t@judge.example/v1", "http://[user:s3cr3t@judge.example/v1"]


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_bad_base_url_is_reported_without_its_password(url, clean_env, capsys):
    from medqa.teacher.cli import main as teacher_main
    from medqa.teacher.client import TeacherConfig

    with pytest.raises(TeacherSetupError) as e:
        TeacherArgs(teacher_base_url=url)
    assert "s3cr3t" not in str(e.value) and "not an http(s) URL" in str(e.value)
    with pytest.raises(TeacherSetupError) as e:
        TeacherConfig(base_url=url)
    assert "s3cr3t" not in str(e.value)
    clean_env.setenv("MEDQA_TEACHER_BASE_URL", url)
    with pytest.raises(TeacherSetupError) as e:
        TeacherArgs()
    assert "s3cr3t" not in str(e.value)
    clean_env.delenv("MEDQA_TEACHER_BASE_URL")
    with pytest.raises(SystemExit) as e:
        teacher_main(["score", "--input", "x.jsonl", "--output", "y.jsonl", "--base-url", url])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "s3cr3t" not in err and "Traceback" not in err


def test_a_mistyped_scheme_from_make_is_reported_without_its_password():
    proc = subprocess.run(["make", "--no-print-directory", "-o", "setup", "teacher-check", "TEACHER_N=1"],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env=_env(BASE_URL="htps://user:s3cr3t@judge.example/v1"))
    assert proc.returncode != 0
    assert "s3cr3t" not in proc.stdout + proc.stderr
    assert "htps://judge.example/v1" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- 10: a key and URL credentials: refused at once

def test_an_api_key_with_url_credentials_is_refused_when_the_arguments_are_parsed(clean_env):
    key = "sk-" + uuid.uuid4().hex
    clean_env.setenv("MEDQA_TEACHER_API_KEY", key)
    for make_args in (lambda: TeacherArgs(teacher_base_url="http://u:s3cr3t@127.0.0.1:9/v1"),
                      lambda: (clean_env.setenv("MEDQA_TEACHER_BASE_URL", "http://u:s3cr3t@127.0.0.1:9/v1"),
                               TeacherArgs())):
        with pytest.raises(TeacherSetupError) as e:
            make_args()
        msg = str(e.value)
        assert "user:password" in msg and "API key" in msg and "\n" not in msg
        assert "s3cr3t" not in msg and key not in msg
    # the same rule for a TeacherConfig built directly (one Authorization header, never two)
    from medqa.teacher.client import Secret, TeacherConfig

    with pytest.raises(TeacherSetupError):
        TeacherConfig(base_url="http://u:s3cr3t@127.0.0.1:9/v1", api_key=Secret(key))
    clean_env.delenv("MEDQA_TEACHER_BASE_URL")
    TeacherArgs(teacher_base_url="http://127.0.0.1:9/v1")  # a key with a plain URL: fine


def test_ppo_refuses_key_plus_url_credentials_before_loading_a_model(tmp_path, capsys):
    """`medqa ppo` with both: exit 2 and one line about the credentials, although the model path does not exist
    (so nothing was loaded: on 0b34e14 the run got as far as the model)."""
    env = _env(MEDQA_TEACHER_API_KEY="sk-" + uuid.uuid4().hex, MEDQA_TEACHER_BASE_URL="http://u:s3cr3t@127.0.0.1:9/v1")
    proc = subprocess.run([sys.executable, "-m", "medqa", "ppo", "--config", "recipes/ppo/cpu/lora.yaml",
                           "--model_name_or_path", str(tmp_path / "no-such-model"), "--output_dir",
                           str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "user:password" in proc.stderr and "API key" in proc.stderr
    assert "no-such-model" not in proc.stderr and "Traceback" not in proc.stderr and "s3cr3t" not in proc.stderr
