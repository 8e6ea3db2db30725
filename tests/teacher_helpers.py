"""Shared helpers for the teacher tests: an offline judge on a loopback port, and its /stats."""

from __future__ import annotations

import json
import urllib.request

from medqa.text.think import join_think

THINK = "用户描述了症状，需要考虑常见原因、严重程度以及是否存在危险信号，再给出合适的建议。"


def stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/stats", timeout=10) as r:
        return json.loads(r.read())


def reset_stats(url: str) -> None:
    req = urllib.request.Request(url + "/stats/reset", data=b"", method="POST")
    urllib.request.urlopen(req, timeout=10).read()


def pairs(n: int, tag: str = "p") -> list[tuple[str, str]]:
    return [(f"问题{tag}{i}：感冒咳嗽{i}天了怎么办？",
             join_think(THINK, f"可能是病毒感染（{tag}{i}），建议多休息、多喝水；如果症状加重请及时就医。")) for i in range(n)]


def send_json(handler, obj: dict) -> None:
    """Answer a request from a test server's handler: 200 with `obj` as JSON."""
    reply = json.dumps(obj).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(reply)))
    handler.end_headers()
    handler.wfile.write(reply)


def send_chat_reply(handler, model: str, content: str) -> None:
    """Answer an OpenAI-compatible chat request from a test server's handler: 200 with one message."""
    send_json(handler, {"model": model, "choices": [{"message": {"content": content}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1}})


class ScriptedJudge:
    """An OpenAI-compatible judge on a loopback port that gives every criterion `scores[answer]` (0–10) for the
    answers it knows and HTTP 500 for all others: a judgement that is known exactly beside one that fails.
    Use as a context manager; `url` is the base URL."""

    def __init__(self, scores: dict[str, float]):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from medqa.teacher.rubric import parse_user_prompt

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                pair = parse_user_prompt(body["messages"][-1]["content"])
                score = scores.get(pair[1]) if pair else None
                if score is None:
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"scripted failure")
                    return
                content = json.dumps({c: score for c in ("safety", "reasoning", "completeness", "empathy")}
                                     | {"needs_emergency": False, "critique": "scripted judgement"})
                send_chat_reply(self, body["model"], content)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def __enter__(self) -> ScriptedJudge:
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


class ScriptedTriage:
    """An OpenAI-compatible endpoint on a loopback port that answers triage prompts (`medqa.teacher.triage`) from
    `labels`: the first key found in the question gives its reply — `(emergency, category)`, or None for HTTP 400
    (a refusal no retry changes); a question matching no key is triaged as no emergency. It keeps every request
    body it got (`bodies`, `questions`), so a test counts calls and reads what left the machine.
    Use as a context manager; `url` is the base URL."""

    def __init__(self, labels: dict[str, tuple[bool, str] | None], model: str = "scripted-triage"):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from medqa.teacher.triage import parse_triage_prompt

        self.bodies: list[dict] = []
        self.questions: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                question = parse_triage_prompt(body["messages"][-1]["content"]) or ""
                outer.questions.append(question)
                key = next((k for k in labels if k in question), None)
                label = labels[key] if key is not None else (False, "none")
                if label is None:
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(b"scripted refusal")
                    return
                content = json.dumps({"emergency": label[0], "category": label[1], "reason": "scripted triage"})
                send_chat_reply(self, model, content)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def requests(self) -> int:
        return len(self.bodies)

    def __enter__(self) -> ScriptedTriage:
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
