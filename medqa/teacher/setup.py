"""One way to configure and build the teacher, for every command that uses it (`teacher`, `eval`, PPO/GRPO).

`TeacherArgs` is a dataclass with one field per flag. It works as an extra dataclass of `HfArgumentParser` /
`TrlParser` (RL recipes: `--teacher_base_url …` or `teacher_base_url:` in YAML) and with argparse through
`add_teacher_args(parser)` + `teacher_args_from_namespace(ns)` (`--teacher-base-url …`). Without a flag the base URL
comes from the environment variable MEDQA_TEACHER_BASE_URL (`base_url_from_env`, the one place it is read): a URL
with user:password goes there, never on a command line (refused there: `ps` shows every process's arguments).
Its checks run when the arguments are parsed, before any model loads. `build_teacher(args)`
returns a `Teacher`: the validated `TeacherConfig`, the one default cache file, and — with `--teacher-offline` —
the in-process offline judge, announced loudly and labelled as such in every result.

    with build_teacher(args) as teacher:          # or: config, cache_path = build_teacher(args)
        results, usage = score_pairs(teacher.config, pairs, teacher.cache_path)
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field, fields
from typing import Any

from medqa.runs.argtypes import at_least
from medqa.teacher.protocol import (  # noqa: F401
    BASE_URL_ENV,
    KEY_ENV_VARS,
    OFFLINE_BANNER,
    TeacherSetupError,
    check_auth,
    check_base_url,
    has_credentials,
    public_url,
)

DEFAULT_CACHE = "cache/teacher_judgements.sqlite"
OFFLINE_ENDPOINT = "in-process:medqa-offline-judge"  # the endpoint recorded for `--teacher-offline`


@dataclass
class TeacherArgs:
    teacher_base_url: str | None = field(default=None, metadata={
        "help": f"OpenAI-compatible judge endpoint (default ${BASE_URL_ENV}, else https://api.deepseek.com; "
                f"keyless servers allowed). A URL with user:password goes in ${BASE_URL_ENV}, not here"})
    teacher_model: str | None = field(default=None, metadata={"help": "judge model name (default deepseek-chat)"})
    teacher_offline: bool = field(default=False, metadata={
        "help": "use the OFFLINE heuristic judge, started in-process (demos and tests; not an LLM)"})
    teacher_cache: str = field(default=DEFAULT_CACHE, metadata={
        "help": f"SQLite judgement cache shared by every command (default {DEFAULT_CACHE}); '' for none"})
    teacher_concurrency: int | None = field(default=None, metadata={"help": "max judge requests in flight (default 16)"})
    teacher_timeout: float | None = field(default=None, metadata={"help": "per-request timeout in seconds (default 60)"})
    teacher_rpm: float | None = field(default=None, metadata={"help": "judge requests-per-minute limit"})
    teacher_max_retries: int | None = field(default=None, metadata={"help": "retries per judge request (default 5)"})
    # RL runs only (PPO, GRPO: `medqa.rewards.TeacherStopRule`); not flags of the argparse commands
    teacher_fail_threshold: float = field(default=0.5, metadata={
        "help": "RL: a step in which more than this share of the items has no judgement counts as failed"})
    teacher_fail_patience: int = field(default=3, metadata={
        "help": "RL: stop the run (exit code 3) after this many failed steps in a row"})

    def __post_init__(self) -> None:
        for name in ("teacher_concurrency", "teacher_timeout", "teacher_rpm"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise TeacherSetupError(f"{name} must be > 0 (got {v})")
        if self.teacher_max_retries is not None and self.teacher_max_retries < 0:
            raise TeacherSetupError(f"teacher_max_retries must be >= 0 (got {self.teacher_max_retries})")
        if self.teacher_base_url is not None:
            check_base_url(self.teacher_base_url)
        if self.teacher_offline and self.teacher_base_url is not None:
            raise TeacherSetupError("teacher_offline and teacher_base_url exclude each other")
        if not self.teacher_offline:  # the URL the run will use, checked now: before any model loads
            url = self.base_url
            if url is not None:
                check_base_url(url)
            check_auth(url, any(os.environ.get(name) for name in KEY_ENV_VARS))
        if not 0 < self.teacher_fail_threshold <= 1 or self.teacher_fail_patience < 1:
            raise TeacherSetupError(f"teacher_fail_threshold must be in (0, 1] and teacher_fail_patience >= 1 "
                                    f"(got {self.teacher_fail_threshold}, {self.teacher_fail_patience})")

    @property
    def base_url(self) -> str | None:
        """The base URL this run uses: the flag, else MEDQA_TEACHER_BASE_URL, else None (the client's default)."""
        return self.teacher_base_url if self.teacher_base_url is not None else base_url_from_env()


def base_url_from_env(env: dict[str, str] | None = None, var: str = BASE_URL_ENV) -> str | None:
    """The base URL in the environment variable `var` (MEDQA_TEACHER_BASE_URL; `medqa bench-medical`'s
    MEDQA_BENCH_BASE_URL), None when unset or empty. The only place a base URL is read from the environment."""
    value = (os.environ if env is None else env).get(var, "").strip()
    return value or None


TEACHER_URL_FLAGS = ("--teacher_base_url", "--teacher-base-url", "--base-url")


def refuse_credentials_on_command_line(argv: list[str], names: tuple[str, ...] = TEACHER_URL_FLAGS,
                                       env_var: str = BASE_URL_ENV) -> None:
    """TeacherSetupError when one of the URL flags `names` carries user:password: a command line is visible to every
    user in `ps` (as `serve --auth` is refused); the message names `env_var`, where such a URL goes instead."""
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name not in names:
            continue
        if not eq:
            value = argv[i + 1] if i + 1 < len(argv) else ""
        if has_credentials(value):
            raise TeacherSetupError(_ON_COMMAND_LINE.format(flag=name, url=public_url(value), env=env_var))


_ON_COMMAND_LINE = ("{flag} {url}: user:password on the command line is visible to every user in `ps`; put the URL in "
                    "the environment variable {env} instead (make: BASE_URL=…, passed that way)")


# ------------------------------------------------------------------------------------------------ argparse

def _url(text: str) -> str:
    try:
        check_base_url(text)
        if has_credentials(text):
            raise TeacherSetupError(_ON_COMMAND_LINE.format(flag="the base URL", url=public_url(text), env=BASE_URL_ENV))
        return text
    except TeacherSetupError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


RL_ONLY = ("teacher_fail_threshold", "teacher_fail_patience")  # TeacherArgs fields that are no argparse flags

# field -> (type at parse time, short aliases of the `medqa teacher` subcommands)
_ARGPARSE: dict[str, tuple[Any, tuple[str, ...]]] = {
    "teacher_base_url": (_url, ("--base-url",)),
    "teacher_model": (str, ("--model",)),
    "teacher_offline": (None, ("--offline",)),
    "teacher_cache": (str, ("--cache",)),
    "teacher_concurrency": (at_least(int, 0, inclusive=False), ("--concurrency",)),
    "teacher_timeout": (at_least(float, 0, inclusive=False), ("--timeout",)),
    "teacher_rpm": (at_least(float, 0, inclusive=False), ("--rpm",)),
    "teacher_max_retries": (at_least(int, 0), ("--max-retries",)),
}


def add_teacher_args(parser: argparse.ArgumentParser | Any, short_aliases: bool = False) -> None:
    """Add `--teacher-*` flags (validated at parse time) to an argparse parser or group.

    With `short_aliases` the `medqa teacher` spellings (`--base-url`, `--offline`, `--cache`, …) work too."""
    for f in fields(TeacherArgs):
        if f.name in RL_ONLY:
            continue
        kind, aliases = _ARGPARSE[f.name]
        names = ["--" + f.name.replace("_", "-"), *(aliases if short_aliases else ())]
        if kind is None:
            parser.add_argument(*names, dest=f.name, action="store_true", help=f.metadata["help"])
        else:
            parser.add_argument(*names, dest=f.name, type=kind, default=f.default, help=f.metadata["help"])


def teacher_args_from_namespace(ns: argparse.Namespace) -> TeacherArgs:
    return TeacherArgs(**{f.name: getattr(ns, f.name) for f in fields(TeacherArgs) if hasattr(ns, f.name)})


# ------------------------------------------------------------------------------------------------ building

class Teacher:
    """A configured teacher: `config`, `cache_path`, `offline`; stops the in-process offline judge on close.

    Unpacks as `(config, cache_path)`."""

    def __init__(self, config: Any, cache_path: str | None, running: Any = None):
        self.config = config
        self.cache_path = cache_path
        self._running = running

    @property
    def offline(self) -> bool:
        return self._running is not None

    @property
    def describe(self) -> str:
        kind = "the OFFLINE heuristic judge" if self.offline else self.config.model
        return f"{kind} at {public_url(self.config.endpoint)} (cache {self.cache_path or 'none'})"

    def __iter__(self):
        return iter((self.config, self.cache_path))

    def close(self) -> None:
        if self._running is not None:
            self._running.stop()
            self._running = None

    def __enter__(self) -> Teacher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def announce_offline(url: str, stream: Any = None) -> None:
    """The loud notice every command prints when scores come from the offline judge."""
    from medqa.teacher.judge import OFFLINE_MODEL

    bar = "!" * 100
    print(f"{bar}\n{OFFLINE_BANNER.format(model=OFFLINE_MODEL)}\nusing the offline judge at {url}\n{bar}",
          file=stream or sys.stderr, flush=True)


def build_teacher(args: TeacherArgs | argparse.Namespace, *, require_key: bool = True, quiet: bool = False,
                  **overrides: Any) -> Teacher:
    """The teacher described by `args` (a TeacherArgs, or a namespace from `add_teacher_args`).

    Without a key, a base URL or `teacher_offline`, raises TeacherSetupError (never a silent fallback).
    `overrides` are extra `TeacherConfig` fields (e.g. `seed`)."""
    from medqa.teacher.client import TeacherConfig
    from medqa.teacher.protocol import DEFAULT_BASE_URL

    ta = args if isinstance(args, TeacherArgs) else teacher_args_from_namespace(args)
    cache = ta.teacher_cache or None
    base = {"model": ta.teacher_model, "concurrency": ta.teacher_concurrency, "rpm": ta.teacher_rpm,
            "timeout_s": ta.teacher_timeout, "max_retries": ta.teacher_max_retries, **overrides}
    if ta.teacher_offline:
        from medqa.teacher.judge import OFFLINE_MODEL
        from medqa.teacher.server import RunningServer, ServerOptions

        running = RunningServer(ServerOptions(port=0))
        if not quiet:
            announce_offline(running.url)
        try:
            cfg = TeacherConfig.from_env(**{**base, "base_url": running.url, "model": OFFLINE_MODEL,
                                            "price_in_per_mtok": 0.0, "price_out_per_mtok": 0.0,
                                            "endpoint_label": OFFLINE_ENDPOINT})
        except BaseException:
            running.stop()
            raise
        return Teacher(cfg, cache, running)
    cfg = TeacherConfig.from_env(**{**base, "base_url": ta.base_url})
    if require_key and not cfg.api_key and cfg.base_url == DEFAULT_BASE_URL:
        raise TeacherSetupError(
            "no API key for the teacher: set DEEPSEEK_API_KEY (or MEDQA_TEACHER_API_KEY), pass --teacher-base-url for a "
            "keyless OpenAI-compatible server, or --teacher-offline for the offline heuristic judge")
    return Teacher(cfg, cache)
