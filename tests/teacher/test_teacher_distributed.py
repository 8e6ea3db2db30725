"""Cross-rank batching on 2 CPU processes (gloo): identical results on both ranks, global in-flight <= cap."""

from __future__ import annotations

import json
import socket

import pytest

from medqa.teacher.judge import OFFLINE_MODEL
from medqa.teacher.server import RunningServer, ServerOptions, pair_id
from tests.teacher_helpers import pairs, stats

CAP = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, url: str, out_dir: str, cache: str) -> None:
    import time

    import torch.distributed as dist

    from medqa.teacher.client import TeacherConfig
    from medqa.teacher.distributed import DistributedTeacher

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        shared = pairs(6, "shared")
        mine = pairs(5, f"rank{rank}")
        teacher = DistributedTeacher(TeacherConfig(base_url=url, model=OFFLINE_MODEL, concurrency=CAP), cache)
        handle = teacher.submit(shared + mine + shared[:2])  # non-blocking; duplicates within and across ranks
        t0 = time.monotonic()
        busy = sum(i * i for i in range(20000))  # "other work" while the teacher runs
        submitted_in = time.monotonic() - t0
        results = handle.result(timeout=120)
        again = teacher.score(shared)  # second call: all cache hits on the root
        teacher.close()
        with open(f"{out_dir}/rank{rank}.json", "w") as fh:
            json.dump({"results": [[r.key, r.ok, r.overall_score, r.scores] for r in results],
                       "again_cached": [r.cached for r in again], "busy": busy, "submit_s": submitted_in}, fh)
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_cross_rank_batching_two_processes(tmp_path):
    import torch.multiprocessing as mp

    with RunningServer(ServerOptions(port=0, latency_ms=80)) as srv:
        mp.spawn(_worker, args=(2, _free_port(), srv.url, str(tmp_path), str(tmp_path / "c.sqlite")), nprocs=2,
                 join=True)
        s = stats(srv.url)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    n_shared = 6
    assert r0["results"][:n_shared] == r1["results"][:n_shared]  # shared pairs: identical on both ranks
    assert r0["results"][-2:] == r0["results"][:2] == r1["results"][-2:]
    assert r0["results"][n_shared:n_shared + 5] != r1["results"][n_shared:n_shared + 5]
    assert all(ok for _, ok, _, _ in r0["results"] + r1["results"])
    assert all(r0["again_cached"]) and all(r1["again_cached"])
    # 6 shared + 5 + 5 unique pairs, each paid exactly once; never more than CAP requests in flight globally.
    assert s["total_requests"] == 16
    assert all(v["served"] == 1 for v in s["pairs"].values())
    assert 2 <= s["max_in_flight"] <= CAP
    assert pair_id(*pairs(1, "shared")[0]) in s["pairs"]
