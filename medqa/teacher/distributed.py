"""Cross-rank teacher batching for PPO (torch.distributed, any backend; its own gloo group).

Every rank calls `DistributedTeacher.score(pairs)` (or `submit(pairs)` → handle, `handle.result()` later) with
its own (question, answer) pairs. The pairs are gathered on the root rank, de-duplicated across ranks, looked
up in the cache, and only misses are sent — by the root alone, through one `TeacherClient` whose cap is the
configured concurrency, so the *global* number of requests in flight never exceeds it. Each rank receives the
results for its own pairs (failed items stay failed: `result.ok` is False, `result.error` says why).

The collectives run on a dedicated gloo group from a single worker thread per rank, in submission order, so
`submit` does not block the training loop and never interleaves with the trainer's own collectives.
All ranks must call `score`/`submit` the same number of times, in the same order (like any collective).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from medqa.teacher.client import TeacherClient, TeacherConfig, TeacherResult, Usage

Pair = tuple[str, str]


class TeacherHandle:
    """A pending cross-rank scoring call."""

    def __init__(self, future: Future):
        self._future = future

    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout: float | None = None) -> list[TeacherResult]:
        return self._future.result(timeout)


class _RootClient:
    """The root's client, living on its own event loop thread (so cache and session stay on one thread)."""

    def __init__(self, config: TeacherConfig, cache_path: str | None):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="medqa-teacher-loop", daemon=True)
        self.thread.start()
        self.client: TeacherClient | None = None
        self.cache: Any = None
        self._run(self._open(config, cache_path))

    def _run(self, coro) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def _open(self, config: TeacherConfig, cache_path: str | None) -> None:
        from medqa.teacher.cache import JudgementCache

        self.cache = JudgementCache(cache_path) if cache_path else None
        self.client = await TeacherClient(config, self.cache).__aenter__()

    async def _close(self) -> None:
        if self.client is not None:
            await self.client.__aexit__(None, None, None)
        if self.cache is not None:
            self.cache.close()

    def judge(self, pairs: list[Pair]) -> list[TeacherResult]:
        assert self.client is not None
        return self._run(self.client.judge_many(pairs))

    def close(self) -> None:
        self._run(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class DistributedTeacher:
    """Create on every rank after `torch.distributed.init_process_group` (its constructor is a collective)."""

    def __init__(self, config: TeacherConfig, cache_path: str | None = None, root: int = 0, group: Any = None):
        import torch.distributed as dist

        if not dist.is_initialized():
            raise RuntimeError("DistributedTeacher needs torch.distributed.init_process_group first")
        self._dist = dist
        self._own_group = group is None
        self.group = dist.new_group(backend="gloo") if group is None else group
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.root = root
        self.config = config
        self._root = _RootClient(config, cache_path) if self.rank == root else None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medqa-teacher-collective")

    @property
    def usage(self) -> Usage | None:
        """The root's counters (None on other ranks)."""
        return self._root.client.usage if self._root is not None and self._root.client is not None else None

    def submit(self, pairs: list[Pair]) -> TeacherHandle:
        """Start scoring this rank's pairs; returns at once. Collect with `handle.result()`."""
        return TeacherHandle(self._worker.submit(self._score, [(str(q), str(a)) for q, a in pairs]))

    def score(self, pairs: list[Pair]) -> list[TeacherResult]:
        """Blocking: this rank's results, in order."""
        return self.submit(pairs).result()

    def _score(self, pairs: list[Pair]) -> list[TeacherResult]:
        dist = self._dist
        gathered: list[list[Pair]] | None = [[] for _ in range(self.world_size)] if self.rank == self.root else None
        dist.gather_object(pairs, gathered, dst=self.root, group=self.group)
        scattered: list[list[TeacherResult]] | None = None
        if self._root is not None:
            assert gathered is not None
            unique = list(dict.fromkeys(p for rank_pairs in gathered for p in rank_pairs))
            by_pair = dict(zip(unique, self._root.judge(unique), strict=True))
            scattered = [[by_pair[p] for p in rank_pairs] for rank_pairs in gathered]
        out: list[Any] = [None]
        dist.scatter_object_list(out, scattered, src=self.root, group=self.group)
        return out[0]

    def close(self) -> None:
        """Stop the worker thread, then destroy the group this object created. A gloo group left to the
        interpreter's exit can abort the process ("terminate called without an active exception") after the
        work is done."""
        self._worker.shutdown(wait=True)
        if self._root is not None:
            self._root.close()
        if self._own_group and self.group is not None and self._dist.is_initialized():
            self._dist.destroy_process_group(self.group)
            self.group = None
