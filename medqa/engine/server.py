"""Start a vLLM OpenAI-compatible server for rollouts and evaluation samples: `medqa vllm-serve --model M` (`make
vllm-serve MODEL=…`).

vLLM lives in its own environment (`.venv-vllm`, `make vllm-setup`): every vLLM release pins transformers below the
project's, so the trainer talks to it over HTTP, the same shape as a rollout node on a cluster. The server is started
with what the project's callers rely on:
* runtime LoRA loading (`--enable-lora`, `VLLM_ALLOW_RUNTIME_LORA_UPDATING=1`): PPO loads its adapter every step;
* `--logprobs-mode processed_logprobs`: returned log-probs are those of the sampling distribution (after the
  repetition penalty and the temperature), what the trainer computes;
* `--generation-config vllm`: the model folder's generation_config.json never changes what a request asked for;
* bound to 127.0.0.1 unless `--host` says otherwise (Slurm: the rollout node's address, for trainers on other nodes).

It is health-checked before its URL is written (atomically) to `--url-file` (outputs/vllm-server/url), where PPO,
eval and predict read it by default; the server stops with this command (Ctrl-C, SIGTERM, and on Linux also when the
process that started it dies, even by SIGKILL) and the URL file is removed.
A model folder holding a LoRA adapter serves the adapter's base model (the adapter is loaded by its users).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medqa.engine.client import DEFAULT_URL_FILE, EngineUnavailable, VLLMClient
from medqa.engine.served import served_base
from medqa.errors import ExitCode
from medqa.runs.io import OutputError, atomic_write, check_output_file, record_output_file

VLLM_VENV = Path(".venv-vllm")


def vllm_python(venv: Path | None = None) -> Path:
    """The interpreter of the vLLM environment (default `.venv-vllm`); a one-line error unless `make vllm-setup` has
    finished building it (its stamp, `.installed-<package>`, is written last)."""
    venv = VLLM_VENV if venv is None else venv
    python = venv / "bin" / "python"
    if not python.is_file() or not any(venv.glob(".installed-*")):
        raise FileNotFoundError(f"no complete vLLM environment at {venv}: build it with `make vllm-setup`")
    return python


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_command(python: Path, model: str, *, host: str, port: int, max_lora_rank: int = 64, max_loras: int = 2,
                   dtype: str = "auto", max_model_len: int | None = None, extra: list[str] = ()) -> list[str]:
    cmd = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", host,
           "--port", str(port), "--enable-lora", "--max-lora-rank", str(max_lora_rank), "--max-loras", str(max_loras),
           "--dtype", dtype, "--logprobs-mode", "processed_logprobs", "--generation-config", "vllm",
           "--served-model-name", "base"]
    if max_model_len:
        cmd += ["--max-model-len", str(max_model_len)]
    return cmd + list(extra)


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "1"
    # CPU backend: a KV cache sized for a workstation, and no pinning of the server's threads to cores (pinning
    # starves the trainer on the same machine). Both are ignored on a GPU; a caller's own values win.
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    env.pop("PYTHONPATH", None)  # the vLLM environment imports its own packages, never this checkout's pins
    return env


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def stop_with_parent(sig: int = signal.SIGTERM):
    """A `preexec_fn` for a child that must not outlive the process starting it: on Linux the kernel sends the child
    `sig` when that process (strictly, the thread that started the child) ends, however it ends; SIGTERM lets vLLM
    stop its own engine processes. Elsewhere (no prctl) it does nothing. libc's `prctl` is looked up here, in the
    parent: between fork and exec the child only calls it (no dlopen, whose lock another thread may have held)."""
    parent = os.getpid()
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):
        prctl = None

    def preexec() -> None:
        if prctl is None:
            return
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the starter died before prctl took effect
            os.kill(os.getpid(), sig)

    return preexec


class VLLMServer:
    """A vLLM server process: started, health-checked, stopped. `with VLLMServer(...) as server: server.url`.
    Start it from the thread that outlives it (the main thread): the server stops when that thread ends."""

    def __init__(self, model: str, *, host: str = "127.0.0.1", port: int = 0, log: Path | None = None,
                 venv: Path | None = None, startup_timeout: float = 600.0, **options):
        self.model = served_base(model)
        self.host, self.port = host, port or free_port(host if host != "0.0.0.0" else "127.0.0.1")
        self.log, self.venv, self.startup_timeout, self.options = log, venv, startup_timeout, options
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        host = socket.gethostname() if self.host == "0.0.0.0" else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> VLLMServer:
        cmd = server_command(vllm_python(self.venv), self.model, host=self.host, port=self.port, **self.options)
        out = open(self.log, "ab") if self.log else None  # noqa: SIM115 (None: this terminal)
        # Its own session (a Ctrl-C meant for the trainer does not reach it), stopped by `stop`, and by the kernel
        # when this process dies without calling it (SIGKILL): a leftover server would hold the cores and memory.
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=server_env(),
                                     start_new_session=True, preexec_fn=stop_with_parent())
        client = VLLMClient(f"http://127.0.0.1:{self.port}" if self.host in ("0.0.0.0", "127.0.0.1") else self.url,
                            timeout=10.0, connect_timeout=2.0)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise EngineUnavailable(f"the vLLM server exited with status {self.proc.returncode} while starting"
                                        + (f"; see {self.log}" if self.log else ""))
            try:
                client.health()
                return self
            except EngineUnavailable:
                if time.monotonic() > deadline:
                    self.stop()
                    raise EngineUnavailable(f"the vLLM server was not ready within {self.startup_timeout:g} s"
                                            + (f"; see {self.log}" if self.log else "")) from None
                time.sleep(1.0)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextmanager
def url_file(path: Path, url: str) -> Iterator[None]:
    """Write the URL (atomically) while the server runs; remove it after, unless another server replaced it. The file
    is recorded as `vllm-serve`'s in its folder's manifest, so a later server may replace it and nothing else is
    (`check_output_file`, before the server starts)."""
    record_output_file(path, "vllm-serve")
    with atomic_write(path) as fh:
        fh.write(url + "\n")
    try:
        yield
    finally:
        try:
            if path.read_text(encoding="utf-8").strip() == url:
                path.unlink()
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="medqa vllm-serve", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="base model folder or hub id (an adapter folder: its base)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: other nodes may connect)")
    p.add_argument("--port", type=int, default=0, help="0: a free port")
    p.add_argument("--url-file", type=Path, default=DEFAULT_URL_FILE, help="where the server's URL is written")
    p.add_argument("--overwrite", action="store_true", help="replace a --url-file that medqa vllm-serve did not write")
    p.add_argument("--max-lora-rank", type=int, default=64, help="largest adapter rank it will load")
    p.add_argument("--dtype", default="auto", help="weights' dtype (auto: the model's; float32 on CPU tests)")
    p.add_argument("--max-model-len", type=int, default=None, help="context length (default: the model's)")
    p.add_argument("--log", type=Path, default=None, help="server log file (default: this terminal)")
    p.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for the server to be ready")
    p.add_argument("--venv", type=Path, default=None, help="the vLLM environment (default .venv-vllm; make vllm-setup)")
    p.add_argument("vllm_args", nargs=argparse.REMAINDER, help="after --: passed to vLLM as they are")
    args = p.parse_args(argv)
    extra = args.vllm_args[1:] if args.vllm_args[:1] == ["--"] else args.vllm_args
    try:
        check_output_file(args.url_file, "vllm-serve", overwrite=args.overwrite)
        server = VLLMServer(args.model, host=args.host, port=args.port, log=args.log, venv=args.venv,
                            startup_timeout=args.startup_timeout, max_lora_rank=args.max_lora_rank, dtype=args.dtype,
                            max_model_len=args.max_model_len, extra=extra)
        server.start()
    except (FileNotFoundError, ValueError, OutputError, EngineUnavailable) as e:
        print(f"medqa vllm-serve: error: {e}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    stop = {"now": False}

    def _stop(*_):
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        with url_file(args.url_file, server.url):
            print(f"vLLM serving {server.model} at {server.url} (URL in {args.url_file}); Ctrl-C stops it", flush=True)
            while not stop["now"] and server.proc.poll() is None:
                time.sleep(0.5)
            if server.proc.poll() is not None and not stop["now"]:
                print(f"medqa vllm-serve: error: the server exited with status {server.proc.returncode}",
                      file=sys.stderr)
                return ExitCode.FAILED
    finally:
        server.stop()
    return ExitCode.OK
