"""Offline OpenAI-compatible judge server (aiohttp): `medqa teacher serve --host 127.0.0.1 --port P`.

`POST /v1/chat/completions` (and `/chat/completions`) judges the question/answer in the rubric prompt with the
deterministic heuristic rubric of `medqa.teacher.judge` (model name `medqa-offline-judge-v1`, so its cache
rows never mix with a real teacher's), and answers a triage prompt (`medqa.teacher.triage`) with the lexicon's red
flags (`heuristic_triage`); or it runs a local HF causal LM on either (`--model PATH`).

Fault injection for tests and benchmarks, decided deterministically per (pair, attempt number):
`--latency-ms`, `--fail-rate`/`--fail-first` with `--status 429|500|503` (429/503 carry `Retry-After`),
`--malformed-rate`/`--malformed-first` (HTTP 200 with a broken JSON judgement), `--reset-rate`/`--reset-first`
(connection dropped), `--stall-rate`/`--stall-first` (no reply for `--stall-ms`, so the client times out).
The endpoint follows the OpenAI chat-completions protocol where it matters to clients such as the official
`openai` SDK: content as a string or a list of text parts, `n` choices, `stream=True` as server-sent events,
and HTTP 400 for what it does not support (tools, non-text parts). Every heuristic reply carries the header
`X-Medqa-Judge: offline-heuristic` and `system_fingerprint: medqa-offline-heuristic`, so a client labels its
judgements as offline however it reached the server.
`GET /stats` reports requests per pair (`pair_id(question, answer)`; a triage: `pair_id(question,
TRIAGE_RUBRIC_VERSION)`) with what each got, and the maximum
number of requests in flight; `POST /stats/reset` clears them; `GET /v1/models`, `GET /health`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from medqa.errors import ExitCode
from medqa.teacher.judge import OFFLINE_MODEL, heuristic_judgement, heuristic_triage
from medqa.teacher.protocol import OFFLINE_BANNER, OFFLINE_FINGERPRINT, OFFLINE_HEADER
from medqa.teacher.rubric import parse_user_prompt
from medqa.teacher.triage import TRIAGE_RUBRIC_VERSION, parse_triage_prompt

log = logging.getLogger("medqa.teacher.server")

BANNER = OFFLINE_BANNER


def pair_id(question: str, answer: str) -> str:
    return hashlib.sha256(f"{question}\x00{answer}".encode()).hexdigest()[:16]


_CJK = re.compile(r"[\u4e00-\u9fff]")


def _tokens(text: str) -> int:
    # A rough count (1 per CJK character, 1 per 4 other characters): enough for usage and cost accounting.
    cjk = len(_CJK.findall(text))
    return cjk + max(1, (len(text) - cjk) // 4)


@dataclass
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8765
    model_name: str = OFFLINE_MODEL
    latency_ms: float = 0.0
    fail_rate: float = 0.0
    fail_first: int = 0
    status: int = 500
    retry_after: float = 1.0
    malformed_rate: float = 0.0
    malformed_first: int = 0
    reset_rate: float = 0.0
    reset_first: int = 0
    stall_rate: float = 0.0
    stall_first: int = 0
    stall_ms: float = 5000.0
    seed: int = 0
    hf_model: str | None = None


@dataclass
class _Stats:
    pairs: dict[str, Counter] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    total: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"total_requests": self.total, "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
                "pairs": {k: dict(v) for k, v in self.pairs.items()}}


class _HFJudge:
    """A local causal LM as the judge (GPU users without API access). Generation runs in a worker thread."""

    def __init__(self, path: str):
        from medqa.models.loading import load_for_inference

        self.model, self.tok = load_for_inference(path)
        self.lock = threading.Lock()

    def generate(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        import torch

        with self.lock, torch.no_grad():
            ids = self.tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True).to(self.model.device)
            out = self.model.generate(**ids, max_new_tokens=max_tokens, do_sample=False)
            return self.tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


MAX_N = 16
_UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "audio", "modalities", "prediction")


class BadRequest(ValueError):
    """A request this server does not accept (answered with HTTP 400 and the message)."""


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or a list of parts of which only text parts are allowed."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise BadRequest(f"unsupported content part {kind!r}: this judge reads text parts only")
            texts.append(part["text"])
        return "".join(texts)
    raise BadRequest("message content must be a string or a list of text parts")


def parse_request(body: Any) -> tuple[list[dict[str, str]], int, bool, bool]:
    """(messages with text content, n, stream, include_usage) of a chat-completions body, or BadRequest."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise BadRequest("expected an OpenAI chat-completions body with a non-empty 'messages' list")
    for key in _UNSUPPORTED:
        if body.get(key) not in (None, [], False):
            raise BadRequest(f"'{key}' is not supported by this judge")
    messages = []
    for m in body["messages"]:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest("every message needs a 'role'")
        messages.append({"role": m["role"], "content": text_of(m.get("content", ""))})
    if not any(m["role"] == "user" for m in messages):
        raise BadRequest("no user message")
    n = body.get("n", 1)
    if n is None:
        n = 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise BadRequest(f"'n' must be an integer from 1 to {MAX_N}")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false")
    opts = body.get("stream_options") or {}
    return messages, n, stream, bool(isinstance(opts, dict) and opts.get("include_usage"))


class JudgeServer:
    def __init__(self, opts: ServerOptions):
        self.opts = opts
        self.stats = _Stats()
        self.hf = _HFJudge(opts.hf_model) if opts.hf_model else None

    def _roll(self, kind: str, pid: str, k: int, rate: float, first: int) -> bool:
        if k < first:
            return True
        if rate <= 0:
            return False
        h = hashlib.sha256(f"{self.opts.seed}:{kind}:{pid}:{k}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64 < rate

    def app(self):
        from aiohttp import web

        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/stats", self.get_stats)
        app.router.add_post("/stats/reset", self.reset_stats)
        app.router.add_get("/health", self.health)
        return app

    async def health(self, request):
        from aiohttp import web

        return web.json_response({"ok": True, "model": self.opts.model_name})

    async def models(self, request):
        from aiohttp import web

        return web.json_response({"object": "list", "data": [{"id": self.opts.model_name, "object": "model"}]})

    async def get_stats(self, request):
        from aiohttp import web

        return web.json_response(self.stats.as_dict())

    async def reset_stats(self, request):
        from aiohttp import web

        self.stats = _Stats()
        return web.json_response({"ok": True})

    async def chat(self, request):
        from aiohttp import web

        arrived = asyncio.get_running_loop().time()
        try:
            try:
                body = await request.json()
            except ValueError:
                raise BadRequest("the body is not JSON") from None
            messages, n, stream, include_usage = parse_request(body)
        except BadRequest as e:
            return web.json_response({"error": {"message": str(e), "type": "invalid_request_error"}}, status=400)
        first_user = next(m["content"] for m in messages if m["role"] == "user")
        triage_q = parse_triage_prompt(first_user)
        qa = parse_user_prompt(first_user) or (first_user, "")
        # A triage is counted under (question, triage rubric version): never the same id as a judged pair.
        pid = pair_id(triage_q, TRIAGE_RUBRIC_VERSION) if triage_q is not None else pair_id(*qa)
        counts = self.stats.pairs.setdefault(pid, Counter())
        k = counts["requests"]
        counts["requests"] += 1
        self.stats.total += 1
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        o = self.opts
        try:
            if self._roll("reset", pid, k, o.reset_rate, o.reset_first):
                counts["reset"] += 1
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=500)
            if self._roll("stall", pid, k, o.stall_rate, o.stall_first):
                counts["stalled"] += 1
                await asyncio.sleep(o.stall_ms / 1000)
                return web.json_response({"error": {"message": "stalled"}}, status=504)
            if self._roll("status", pid, k, o.fail_rate, o.fail_first):
                counts[f"status_{o.status}"] += 1
                headers = {"Retry-After": f"{o.retry_after:g}"} if o.status in (429, 503) else {}
                return web.json_response({"error": {"message": f"injected {o.status}"}}, status=o.status, headers=headers)
            if self._roll("malformed", pid, k, o.malformed_rate, o.malformed_first):
                counts["malformed"] += 1
                content = '{"safety": 9, "reasoning": "good", "critique": unfinished'
            elif self.hf is not None:
                content = await asyncio.get_running_loop().run_in_executor(
                    None, self.hf.generate, messages, int(body.get("max_tokens") or 512))
                counts["served"] += 1
            elif triage_q is not None:
                content = json.dumps(heuristic_triage(triage_q), ensure_ascii=False)
                counts["served"] += 1
            else:
                content = json.dumps(heuristic_judgement(*qa), ensure_ascii=False)
                counts["served"] += 1
            prompt_tokens = sum(_tokens(m["content"]) for m in messages)
            completion_tokens = _tokens(content) * n
            if o.latency_ms:  # the reply leaves `latency` after the request arrived, judging time included
                await asyncio.sleep(max(0.0, o.latency_ms / 1000 - (asyncio.get_running_loop().time() - arrived)))
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                     "total_tokens": prompt_tokens + completion_tokens}
            head = {"id": f"chatcmpl-{pid}-{k}", "created": int(time.time()), "model": o.model_name}
            headers = {}
            if self.hf is None:
                head["system_fingerprint"] = OFFLINE_FINGERPRINT
                headers[OFFLINE_HEADER] = "offline-heuristic"
            if stream:
                return await self._stream(request, head, headers, content, n, usage if include_usage else None)
            return web.json_response({
                **head, "object": "chat.completion",
                "choices": [{"index": i, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                            for i in range(n)],
                "usage": usage,
            }, headers=headers)
        finally:
            self.stats.in_flight -= 1


    async def _stream(self, request, head: dict, headers: dict, content: str, n: int, usage: dict | None):
        """The reply as server-sent events: a role chunk, content chunks and a finish chunk per choice, [DONE]."""
        from aiohttp import web

        resp = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)

        async def send(choices: list[dict], **extra: Any) -> None:
            chunk = {**head, "object": "chat.completion.chunk", "choices": choices, **extra}
            await resp.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())

        pieces = [content[i:i + 64] for i in range(0, len(content), 64)] or [""]
        for i in range(n):
            await send([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            for piece in pieces:
                await send([{"index": i, "delta": {"content": piece}, "finish_reason": None}])
            await send([{"index": i, "delta": {}, "finish_reason": "stop"}])
        if usage is not None:
            await send([], usage=usage)
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


class RunningServer:
    """A judge server on a background thread with its own event loop (tests, benchmarks, `--offline`)."""

    def __init__(self, opts: ServerOptions):
        self.server = JudgeServer(opts)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: Any = None
        self._error: BaseException | None = None
        self.port = opts.port
        self._thread = threading.Thread(target=self._run, name="medqa-judge-server", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError(f"offline judge failed to start: {self._error}") from self._error

    @property
    def url(self) -> str:
        return f"http://{self.server.opts.host}:{self.port}"

    def _run(self) -> None:
        from aiohttp import web

        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._runner = web.AppRunner(self.server.app(), access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.server.opts.host, self.server.opts.port)
            loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]
        except BaseException as e:  # reported to the constructor
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--model", dest="hf_model", default=None, help="serve a local HF causal LM as the judge")
    ap.add_argument("--model-name", default=None, help=f"model name in replies (default {OFFLINE_MODEL})")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--fail-rate", type=float, default=0.0, help="fraction of requests answered with --status")
    ap.add_argument("--fail-first", type=int, default=0, help="answer the first N requests of every pair with --status")
    ap.add_argument("--status", type=int, default=500, choices=[401, 403, 429, 500, 502, 503])
    ap.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds on 429/503")
    ap.add_argument("--malformed-rate", type=float, default=0.0)
    ap.add_argument("--malformed-first", type=int, default=0)
    ap.add_argument("--reset-rate", type=float, default=0.0)
    ap.add_argument("--reset-first", type=int, default=0)
    ap.add_argument("--stall-rate", type=float, default=0.0)
    ap.add_argument("--stall-first", type=int, default=0)
    ap.add_argument("--stall-ms", type=float, default=5000.0)
    ap.add_argument("--seed", type=int, default=0)


def options_from_args(args: argparse.Namespace) -> ServerOptions:
    name = args.model_name or (f"local-judge:{args.hf_model}" if args.hf_model else OFFLINE_MODEL)
    return ServerOptions(
        host=args.host, port=args.port, model_name=name, latency_ms=args.latency_ms, fail_rate=args.fail_rate,
        fail_first=args.fail_first, status=args.status, retry_after=args.retry_after,
        malformed_rate=args.malformed_rate, malformed_first=args.malformed_first, reset_rate=args.reset_rate,
        reset_first=args.reset_first, stall_rate=args.stall_rate, stall_first=args.stall_first,
        stall_ms=args.stall_ms, seed=args.seed, hf_model=args.hf_model)


def serve(opts: ServerOptions) -> int:
    """Run in the foreground until interrupted."""
    from aiohttp import web

    if opts.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("the offline judge is listening on %s, not loopback", opts.host)
    print(BANNER.format(model=opts.model_name), flush=True)
    print(f"offline judge on http://{opts.host}:{opts.port}/v1/chat/completions (model {opts.model_name})", flush=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    web.run_app(JudgeServer(opts).app(), host=opts.host, port=opts.port, print=None, access_log=None)
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m medqa.teacher.server", description=__doc__.splitlines()[0])
    add_arguments(ap)
    return serve(options_from_args(ap.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
