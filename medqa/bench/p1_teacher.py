"""P1: teacher throughput against the offline judge with 200 ms latency.

512 judgements at concurrency 64, after one untimed warm-up round: achieved throughput / (concurrency /
latency) (goal >= 0.9). The same
client at concurrency 1 on 16 judgements gives the sequential ratio (throughput / (1 / latency)) and the
speed-up of concurrent over sequential calls. The server runs in its own process, the cache is a fresh file.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

LATENCY_S = 0.2
N_CONCURRENT, CONCURRENCY = 512, 64
N_SEQUENTIAL = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pairs(n: int, tag: str) -> list[tuple[str, str]]:
    return [(f"{tag} 问题{i}：咳嗽{i}天怎么办？", f"<think>考虑感冒{i}</think>可能是感冒，建议多休息，如加重请就医（{tag}{i}）。")
            for i in range(n)]


def _measure(url: str, n: int, concurrency: int, cache: str, tag: str) -> dict:
    import asyncio

    from medqa.teacher.cache import JudgementCache
    from medqa.teacher.client import TeacherClient, TeacherConfig
    from medqa.teacher.judge import OFFLINE_MODEL

    cfg = TeacherConfig(base_url=url, model=OFFLINE_MODEL, concurrency=concurrency, timeout_s=30)
    items = _pairs(n, tag)

    async def go() -> tuple[list, object, float]:
        with JudgementCache(cache) as db:
            async with TeacherClient(cfg, db) as client:  # session set up before the clock starts
                # Warm-up (not timed): one round at full concurrency opens the pooled connections and pays the
                # one-time lazy costs (SSL context, regex compilation, imports), so the clock sees steady state.
                await client.judge_many(_pairs(concurrency, f"warm-up {tag}"))
                t0 = time.perf_counter()
                results = await client.judge_many(items)
                return results, client.usage, time.perf_counter() - t0

    results, usage, wall = asyncio.run(go())
    ok = sum(r.ok for r in results)
    throughput = ok / wall
    limit = concurrency / LATENCY_S
    return {"judgements": n, "scored": ok, "concurrency": concurrency, "wall_s": round(wall, 3),
            "throughput_per_s": round(throughput, 2), "limit_per_s": limit, "ratio": round(throughput / limit, 3),
            "requests": usage.requests, "retries": usage.retries}


def run(out_dir: str | Path) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "medqa.teacher.server", "--port", str(port),
                               "--latency-ms", str(LATENCY_S * 1000)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("offline judge did not start") from None
                time.sleep(0.1)
        with tempfile.TemporaryDirectory() as tmp:
            concurrent = _measure(url, N_CONCURRENT, CONCURRENCY, f"{tmp}/c.sqlite", "concurrent")
            sequential = _measure(url, N_SEQUENTIAL, 1, f"{tmp}/s.sqlite", "sequential")
    finally:
        server.terminate()
        server.wait(10)
    result = {
        "benchmark": "P1 teacher throughput (offline judge, 200 ms latency)",
        "concurrent": concurrent,
        "sequential": sequential,
        "ratio": concurrent["ratio"],
        "goal": 0.9,
        "meets_goal": concurrent["ratio"] >= 0.9,
        "speedup_vs_sequential": round(concurrent["throughput_per_s"] / sequential["throughput_per_s"], 2),
    }
    (out_dir / "p1_teacher.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "bench_results"), indent=2))
