"""The vLLM client's failures without a vLLM server: each is one line naming the server, never a hang."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from medqa.engine import EngineUnavailable, Sampling, VLLMClient, resolve_url


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_is_one_line():
    client = VLLMClient(f"http://127.0.0.1:{_closed_port()}", timeout=5)
    with pytest.raises(EngineUnavailable, match="unreachable") as err:
        client.complete("base", [[1, 2]], Sampling(max_tokens=2))
    assert "\n" not in str(err.value) and "make vllm-serve" in str(err.value)


def test_a_server_that_never_answers_times_out():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never answers
    try:
        client = VLLMClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=1.0)
        start = time.monotonic()
        with pytest.raises(EngineUnavailable, match="no answer to POST /v1/completions within 1 s"):
            client.complete("base", [[1, 2]], Sampling(max_tokens=2))
        assert time.monotonic() - start < 30
    finally:
        listener.close()


def test_an_error_answer_names_the_status_and_the_reason():
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = b'{"error": {"message": "The model `x` does not exist."}}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(EngineUnavailable, match="answered 404: .*does not exist"):
            VLLMClient(f"http://127.0.0.1:{server.server_port}").load_adapter("x", "/nowhere")
    finally:
        server.shutdown()


def test_the_url_comes_from_the_flag_or_the_file_make_vllm_serve_writes(tmp_path):
    assert resolve_url("http://h:1/", tmp_path / "none") == "http://h:1"
    with pytest.raises(EngineUnavailable, match="make vllm-serve"):
        resolve_url(None, tmp_path / "none")
    (tmp_path / "url").write_text("http://127.0.0.1:8000\n")
    assert resolve_url(None, tmp_path / "url") == "http://127.0.0.1:8000"
    (tmp_path / "bad").write_text("user=admin password=hunter2")
    with pytest.raises(EngineUnavailable, match="not a server URL") as err:
        resolve_url(None, tmp_path / "bad")
    assert "hunter2" not in str(err.value)  # whatever the file holds is not echoed


def test_vllm_serve_never_replaces_a_url_file_it_did_not_write(tmp_path, capsys):
    from medqa.engine.server import main

    mine = tmp_path / "url"
    mine.write_text("my notes\n")
    assert main(["--model", str(tmp_path), "--url-file", str(mine)]) == 2
    assert "was not written by medqa vllm-serve" in capsys.readouterr().err
    assert mine.read_text() == "my notes\n"


def test_a_server_process_stops_when_the_process_that_started_it_is_killed(tmp_path):
    """`VLLMServer` starts the server with `stop_with_parent()`: SIGKILL the starter (no cleanup runs) and the child
    gets SIGTERM from the kernel, so no server is left holding the cores."""
    import os
    import signal
    import subprocess
    import sys

    starter = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         "from medqa.engine.server import stop_with_parent\n"
         "child = subprocess.Popen(['sleep', '120'], start_new_session=True, preexec_fn=stop_with_parent())\n"
         "print(child.pid, flush=True)\n"
         "time.sleep(120)\n"], stdout=subprocess.PIPE, text=True)
    child = int(starter.stdout.readline())
    try:
        os.kill(child, 0)  # running
        starter.kill()
        starter.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the child {child} outlived its killed starter")
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_full_parameter_ppo_refuses_the_vllm_engine(tmp_path, tiny_model_dir, ppo_prompts):
    from medqa.train.ppo.config import PPOConfig, PPOModelArguments
    from medqa.train.ppo.trainer import PPOTrainer

    cfg = PPOConfig(output_dir=str(tmp_path / "out"), prompts_file=str(ppo_prompts), reward="rules",
                    report_to="none", rollout_engine="vllm", vllm_server_base_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="full-parameter PPO would need every weight reloaded"):
        PPOTrainer(PPOModelArguments(model_name_or_path=str(tiny_model_dir), mode="full"), cfg)


def test_grpo_refuses_use_vllm_and_names_what_does(tiny_model_dir):
    from medqa.train.grpo import parse_args

    with pytest.raises(ValueError, match="vLLM rollouts are PPO's: --rollout_engine vllm"):
        parse_args(["--config", str(Path(__file__).resolve().parents[2] / "recipes/grpo/cpu/lora.yaml"), "--model_name_or_path", str(tiny_model_dir),
                    "--use_vllm", "true"])
