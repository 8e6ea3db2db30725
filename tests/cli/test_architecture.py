"""The package's shape: its floors (no import points up, none goes round in a circle), one model loader, the
launcher choice, and docs that name real targets."""

import ast
import re

import pytest

from conftest import ROOT

PACKAGE = ROOT / "medqa"


def import_graph() -> dict[str, set[str]]:
    """medqa module -> the medqa modules it imports (at module level or inside functions)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]  # a submodule, or a name in node.module
            else:
                continue
            for name in names:
                if name == "medqa" or name.startswith("medqa."):
                    target = resolve(name)
                    if target and target != module:
                        graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycles():
    graph = import_graph()
    assert {"medqa.teacher.protocol", "medqa.models.loading", "medqa.train.pretrain"} <= graph.keys()
    assert cycles(graph) == []


# Floors as folders: at the top of the package only these files; every other module lives in a package.
TOP_LEVEL_FILES = {"__init__.py", "__main__.py", "cli.py", "errors.py"}


def test_the_top_level_holds_only_packages():
    files = {p.name for p in PACKAGE.iterdir() if p.is_file() and p.suffix == ".py"}
    assert files == TOP_LEVEL_FILES, sorted(files - TOP_LEVEL_FILES)
    for folder in (p for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert (folder / "__init__.py").is_file(), f"{folder.name}/ is not a package"


def test_the_cycle_check_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# The floors, bottom to top (docs/architecture.md shows the same table): a module imports only from its own floor
# or the ones below it, never from a floor above. A package's modules share its floor; every medqa module must be on
# one (the package root, `medqa/__init__.py`, is on the ground floor itself, not a default for the rest).
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    # Run folders and their inputs (medqa/runs/), the text every stage shares (medqa/text/), the exit codes.
    ("base", ("medqa", "medqa.errors", "medqa.runs", "medqa.text")),
    ("domain", ("medqa.safety", "medqa.data", "medqa.teacher", "medqa.rewards", "medqa.models", "medqa.engine")),
    # Generating with a model and judging its answers: they read a run's outputs (its weights, its
    # rollout_decoding.json, its reward.json), never its trainer's code.
    ("use", ("medqa.eval", "medqa.apps")),
    ("train", ("medqa.train",)),  # the stages: none imports another (test_no_training_stage_imports_another)
    ("orchestrate", ("medqa.commands", "medqa.bench", "medqa.demo", "medqa.cli", "medqa.__main__")),
]
FLOOR = {name: level for level, (_, names) in enumerate(FLOORS) for name in names}


def floor(module: str) -> int:
    """The floor of a medqa module: its own entry in FLOORS, else its nearest package's."""
    name = module
    while name not in FLOOR:
        name = name.rpartition(".")[0]
        if name in ("", "medqa"):
            raise KeyError(f"{module} is on no floor: add it (or its package) to FLOORS")
    return FLOOR[name]


def upward_imports(graph: dict[str, set[str]], floor_of=floor) -> list[tuple[str, str]]:
    """(module, import) pairs where the import is on a higher floor than the module."""
    return sorted((module, target) for module, targets in graph.items() for target in targets
                  if floor_of(target) > floor_of(module))


def test_every_module_is_on_a_floor():
    graph = import_graph()
    names = [name for _, names in FLOORS for name in names]
    assert len(names) == len(set(names)), "a module or package is on two floors"
    for module in graph:
        floor(module)  # KeyError names a module on no floor
    assert floor("medqa.eval.metrics.mc_accuracy.mc_accuracy") == floor("medqa.eval") < floor("medqa.train.ppo.core")
    with pytest.raises(KeyError, match="medqa.newthing is on no floor"):
        floor("medqa.newthing")


def test_no_import_points_up_a_floor():
    assert upward_imports(import_graph()) == []


def test_the_floor_check_finds_an_upward_import():
    planted = {"medqa.runs.io": {"medqa.text.think"}, "medqa.eval.decoding": {"medqa.models.generation", "medqa.train.ppo.config"},
               "medqa.train.ppo.config": {"medqa.runs.recipes"}, "medqa.demo.pipeline": {"medqa.train.pretrain", "medqa.eval"}}
    assert upward_imports(planted) == [("medqa.eval.decoding", "medqa.train.ppo.config")]
    assert upward_imports({"medqa.models.generation": {"medqa.apps.serve"}, "medqa.apps.serve": {"medqa.models.generation"}}) == [
        ("medqa.models.generation", "medqa.apps.serve")]


def test_only_the_orchestrators_import_a_trainer():
    """No module outside medqa/train imports one of its stages, except the commands above every floor that run them
    (launch, preflight, bench, the demo): eval, predict and serve read a run's outputs, not its trainer."""
    graph = import_graph()
    importers = {module for module, targets in graph.items() if not module.startswith("medqa.train")
                 for target in targets if target.startswith("medqa.train")}
    assert importers and {floor(module) for module in importers} == {len(FLOORS) - 1}, sorted(importers)


def sibling_stage_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(module, import) pairs where a training stage under medqa.train imports another stage."""
    def stage(name: str) -> str:
        return ".".join(name.split(".")[:3])

    return sorted((module, target) for module, targets in graph.items() if module.startswith("medqa.train.")
                  for target in targets if target.startswith("medqa.train.") and stage(target) != stage(module))


def test_no_training_stage_imports_another():
    graph = import_graph()
    assert {"medqa.train.sft", "medqa.train.grpo", "medqa.train.pretrain", "medqa.train.ppo.trainer"} <= graph.keys()
    assert sibling_stage_imports(graph) == []
    assert sibling_stage_imports({"medqa.train.grpo": {"medqa.train.sft", "medqa.models.loading"},
                                  "medqa.train.ppo.trainer": {"medqa.train.ppo.core"}}) == [
        ("medqa.train.grpo", "medqa.train.sft")]


USERS = ("medqa/train/sft.py", "medqa/train/grpo.py", "medqa/train/ppo/trainer.py", "medqa/models/generation.py", "medqa/apps/merge.py",
         "medqa/teacher/server.py")


def test_stages_load_models_through_the_modelling_layer():
    graph = import_graph()
    for user in ("medqa.train.sft", "medqa.train.grpo", "medqa.train.ppo.trainer", "medqa.models.generation", "medqa.apps.merge",
                 "medqa.teacher.server"):
        assert "medqa.models.loading" in graph[user], user
    for path in [*USERS]:
        text = (ROOT / path).read_text(encoding="utf-8")
        assert "AutoModelForCausalLM.from_pretrained(" not in text, f"{path} loads a model itself"
        assert "BitsAndBytesConfig(" not in text, f"{path} builds its own 4-bit config"
        assert "def disable_bnb_cpu_repack" not in text, path


def test_one_model_arguments_class_for_every_stage():
    from medqa.models.loading import ModelArguments
    from medqa.train.grpo import GRPOModelArguments
    from medqa.train.ppo.config import PPOModelArguments
    from medqa.train.sft import SFTModelArguments

    assert SFTModelArguments is ModelArguments
    assert issubclass(GRPOModelArguments, ModelArguments) and issubclass(PPOModelArguments, ModelArguments)
    ppo = PPOModelArguments(model_name_or_path="models/x", mode="lora")
    assert (ppo.use_peft, ppo.load_in_4bit, ppo.lora_dropout, ppo.reference) == (True, False, 0.0, "sft")
    with pytest.raises(ValueError, match="mode full trains every weight"):
        PPOModelArguments(model_name_or_path="models/x", mode="full", use_peft=True)
    with pytest.raises(ValueError, match="lora_trainable_tokens is an SFT option"):
        PPOModelArguments(model_name_or_path="models/x", lora_trainable_tokens=["<think>"])


def test_auto_dtype_follows_training_precision_else_the_device():
    import torch

    from medqa.models.loading import torch_dtype

    assert torch_dtype("auto", bf16=True) is torch.bfloat16
    assert torch_dtype("auto", bf16=False, fp16=True) is torch.float16
    assert torch_dtype("auto", bf16=False) is torch.float32
    assert torch_dtype("auto", device="cpu") is torch.float32
    assert torch_dtype("float16", bf16=True) is torch.float16
    with pytest.raises(ValueError, match="dtype must be one of"):
        torch_dtype("int8")


@pytest.mark.parametrize("profile, accel, default, expected", [
    ("cpu", "", "single_gpu", "accelerate_configs/cpu.yaml"),
    ("cpu", "ddp", "zero2", "accelerate_configs/cpu.yaml"),
    ("cpu", "zero3", "single_gpu", "accelerate_configs/cpu_zero3.yaml"),
    ("gpu", "", "zero2", "accelerate_configs/zero2.yaml"),
    ("8gb", "", "single_gpu", "accelerate_configs/single_gpu.yaml"),
    ("gpu", "zero3_offload", "zero2", "accelerate_configs/zero3_offload.yaml"),
    ("cpu", "my/launcher.yaml", "zero2", "my/launcher.yaml"),
])
def test_accelerate_config_choice(profile, accel, default, expected):
    from medqa.commands.launch import accelerate_config

    assert accelerate_config(profile, accel, default) == expected


def test_make_launches_the_config_python_chooses():
    import subprocess

    proc = subprocess.run(["make", "-n", "--no-print-directory", "sft-full", "PROFILE=cpu", "ACCEL=zero3"],
                          cwd=ROOT, capture_output=True, text=True)
    assert "--config_file accelerate_configs/cpu_zero3.yaml" in proc.stdout, proc.stdout + proc.stderr


def _makefile_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^([a-zA-Z][\w-]*):(?!=)", makefile, re.M)}


def doc_make_targets(text: str) -> set[str]:
    """Targets named as `make X…` in inline code or at the start of a line of a code block (a placeholder such as
    `make sft-MODE` or `make slurm-*` names none)."""
    name = r"([a-z][a-z0-9-]*[a-z0-9])(?![A-Za-z0-9*<{_-])"
    inline = re.findall(r"`make " + name, text)
    block = re.findall(r"^\s*(?:\$ )?make " + name, "\n".join(
        line for chunk in text.split("```")[1::2] for line in chunk.splitlines()), re.M)
    return set(inline) | set(block)


def test_docs_name_only_make_targets_that_exist():
    targets = _makefile_targets()
    missing = {}
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        unknown = doc_make_targets(doc.read_text(encoding="utf-8")) - targets
        if unknown:
            missing[doc.name] = sorted(unknown)
    assert missing == {}
    assert doc_make_targets("run `make demo-sft` first, `make sft-MODE`\n```\nmake nope ARGS=1\n```") == {"demo-sft", "nope"}


def test_architecture_page_maps_every_stage():
    from medqa.commands.stages import STAGES

    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for stage in STAGES:
        assert stage.name in page, stage.name
        for target in stage.targets:
            assert f"`{target}`" in page, target
    for path in re.findall(r"`(medqa/[\w/]+\.py)`", page):
        assert (ROOT / path).is_file(), path
