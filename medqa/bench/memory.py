"""CPU memory accounting for the real-shape benchmark: peak resident memory of a code section, and the largest
tensors it allocates.

- `peak_rss_during(fn)`: Linux lets a process reset its resident-memory high-water mark (`/proc/self/clear_refs`,
  "5"), so the peak of one section is `VmHWM` after it minus `VmRSS` before it. Large tensors are mmap-backed and
  returned to the system when freed, so this follows live tensor memory closely.
- `LargestTensors`: a dispatch mode that sees every tensor an operator returns and keeps the largest ones, with
  the operator, shape and dtype — what dominates a peak.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_bytes(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def rss_bytes() -> int | None:
    return _status_bytes("VmRSS")


def reset_peak_rss() -> bool:
    """Reset this process's resident high-water mark to its current resident size; False where unsupported."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_during(fn: Callable[[], Any]) -> tuple[Any, int | None]:
    """(fn's result, the most resident memory above the starting point while fn ran, in bytes; None off Linux)."""
    ok = reset_peak_rss()
    before = rss_bytes()
    result = fn()
    peak = _status_bytes("VmHWM")
    if not ok or before is None or peak is None:
        return result, None
    return result, max(peak - before, 0)


class LargestTensors(TorchDispatchMode):
    """Keeps the `keep` largest tensors that operators allocate while active (views and in-place results are not
    allocations): bytes, op, shape, dtype."""

    def __init__(self, keep: int = 5):
        super().__init__()
        self.keep, self._heap, self._n = keep, [], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            # A view or an in-place result shares an input's storage: no new allocation.
            if isinstance(t, torch.Tensor) and t.numel() and t.untyped_storage().data_ptr() not in inputs:
                self._n += 1
                item = (t.numel() * t.element_size(), self._n, str(func.overloadpacket.__name__), tuple(t.shape),
                        str(t.dtype).replace("torch.", ""))
                if len(self._heap) < self.keep:
                    heapq.heappush(self._heap, item)
                else:
                    heapq.heappushpop(self._heap, item)
        return out

    @property
    def largest(self) -> list[dict]:
        return [{"bytes": b, "op": op, "shape": list(shape), "dtype": dtype}
                for b, _, op, shape, dtype in sorted(self._heap, reverse=True)]
