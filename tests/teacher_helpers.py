"""Shared helpers for the teacher tests: an offline judge on a loopback port, and its /stats."""

from __future__ import annotations

import json
import urllib.request

from medqa.think import join_think

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
