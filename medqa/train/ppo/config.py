"""PPO options as dataclasses (filled by a recipe YAML + command-line flags through `medqa.runs.recipes`).

Three groups: the policy (`PPOModelArguments`), the algorithm and run (`PPOConfig`) and the teacher
(`medqa.teacher.setup.TeacherArgs`, the one teacher flag set). Defaults are the original project's values (lr 1.41e-5, batch 4, mini-batch 1, target_kl
0.1, 4 PPO epochs); recipes under recipes/ppo/ set what differs per mode and hardware profile.

Two different KLs are controlled, and each target says which it measures:
* `kl_target` — KL(policy ‖ reference) **per sequence** (sum over the response tokens, mean over the batch),
  steered by the adaptive controller through `init_kl_coef`;
* `target_kl` — approximate KL(old policy ‖ new policy) **per token** (mean over response tokens) within one
  step's PPO epochs; the epoch loop stops early once it exceeds 1.5 × target_kl.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from medqa.data.rl_prompts import PromptArguments
from medqa.models.loading import ModelArguments
from medqa.rewards import RewardArguments
from medqa.runs.checkpoints import RunFolderArguments, shaping_settings
from medqa.teacher.setup import TeacherArgs

Reward = Literal["combined", "rules"]
Baseline = Literal["none", "group"]
REWARDS, BASELINES = get_args(Reward), get_args(Baseline)


@dataclass
class PPOModelArguments(ModelArguments):
    """The policy: an SFT output (LoRA/QLoRA adapter, trained further, or a full/merged model). The project's
    `ModelArguments` (medqa/models/loading.py) with PPO's defaults and its KL anchor."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "SFT output to start from: an adapter folder or a full/merged model folder"})
    lora_r: int = field(default=64, metadata={"help": "rank of a new adapter (only when starting from a full model)"})
    lora_alpha: int = field(default=128, metadata={"help": "alpha of a new adapter"})
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout of a new adapter (0: rollouts = updates)"})
    reference: Literal["sft", "base"] = field(default="sft", metadata={
        "help": "KL anchor when starting from an SFT adapter: sft = a frozen second copy of the SFT adapter, switched on "
                "for the reference pass (KL to the SFT policy, the usual RLHF anchor; adapter-sized memory); base = the "
                "network with the adapter disabled (KL to the pre-SFT base model: the KL starts at the SFT's own distance "
                "and the controller pulls towards the base). From a full/merged model a new adapter is trained and "
                "both mean the adapter disabled, i.e. the SFT model"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "trade compute for activation memory"})
    attn_implementation: str | None = field(default="sdpa")

    def __post_init__(self):
        if not self.model_name_or_path:
            raise ValueError("model_name_or_path is required: the SFT output to start from (SFT=… in make)")
        if self.reference not in ("base", "sft"):
            raise ValueError(f"reference must be base or sft; got {self.reference!r}")
        if self.lora_trainable_tokens:
            raise ValueError("lora_trainable_tokens is an SFT option; PPO trains the SFT adapter as it is")
        super().__post_init__()


@dataclass
class PPOConfig(PromptArguments, RewardArguments, RunFolderArguments):
    """The algorithm, the rollouts, the reward and the run."""

    output_dir: str = field(default="outputs/ppo-lora")
    seed: int = 42
    total_steps: int = field(default=200, metadata={"help": "PPO steps (one rollout batch + its update each)"})
    # batch
    batch_size: int = field(default=4, metadata={"help": "rollouts per rank per step (global: × processes)"})
    samples_per_prompt: int = field(default=1, metadata={
        "help": "rollouts of each prompt per step, on the same rank (batch_size / samples_per_prompt prompts per rank)"})
    mini_batch_size: int = field(default=1, metadata={"help": "sequences per rank per optimizer step"})
    ppo_epochs: int = field(default=4, metadata={"help": "passes over the step's rollouts"})
    forward_batch_size: int = field(default=4, metadata={"help": "sequences per no-grad forward (same on all ranks)"})
    # optimisation
    learning_rate: float = 1.41e-5
    lr_scheduler_type: Literal["constant", "linear"] = field(default="constant", metadata={"help": "linear: decay to 0"})
    adam_eps: float = 1e-5
    weight_decay: float = 0.0
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (global norm)"})
    # PPO
    gamma: float = field(default=1.0, metadata={"help": "GAE discount"})
    lam: float = field(default=0.95, metadata={"help": "GAE λ"})
    cliprange: float = field(default=0.2, metadata={"help": "policy ratio clip ε"})
    cliprange_value: float = field(default=0.2, metadata={"help": "value clip around the rollout's values"})
    vf_coef: float = field(default=0.1, metadata={"help": "weight of the value loss"})
    ent_coef: float = field(default=0.0, metadata={"help": "entropy bonus weight (entropy is logged either way)"})
    target_kl: float | None = field(default=0.1, metadata={
        "help": "per-token approx KL(old‖new) that stops the epoch loop once > 1.5×target_kl; none: never"})
    whiten_advantages: bool = field(default=True, metadata={"help": "whiten advantages over the global batch"})
    # KL to the reference
    kl_estimator: Literal["k1", "k3"] = field(default="k1", metadata={"help": "per-token KL estimator"})
    init_kl_coef: float = field(default=0.2, metadata={"help": "initial coefficient of the per-token KL penalty"})
    adaptive_kl: bool = field(default=True, metadata={"help": "adapt the coefficient towards kl_target"})
    kl_target: float = field(default=6.0, metadata={"help": "target KL(policy‖ref) per sequence (summed over tokens)"})
    kl_horizon: float = field(default=10000.0, metadata={"help": "adaptive controller horizon (sequences)"})
    # rollouts
    max_new_tokens: int = 512
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature (log-probs use the same)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling; < 1 makes rollouts slightly off-policy"})
    top_k: int = field(default=0, metadata={"help": "0: off"})
    repetition_penalty: float = field(default=1.0, metadata={
        "help": "> 1 lowers the logits of tokens already in the prompt or the response (transformers' "
                "repetition_penalty, applied before the temperature); the log-probs use the same, so rollouts stay "
                "on-policy. 1: off"})
    enable_thinking: bool = True
    # where the rollouts are sampled
    rollout_engine: Literal["hf", "vllm"] = field(default="hf", metadata={
        "help": "hf: transformers' generate in the trainer; vllm: a vLLM server (make vllm-serve MODEL=the base) "
                "samples with the policy's adapter, saved and loaded every step (LoRA/QLoRA only; docs/gpu.md)"})
    vllm_server_base_url: str | None = field(default=None, metadata={
        "help": "the vLLM server; none: the URL make vllm-serve wrote to outputs/vllm-server/url"})
    vllm_server_timeout: float = field(default=600.0, metadata={
        "help": "seconds one request to the vLLM server may take; then the run stops, resumably"})
    vllm_importance_sampling_correction: bool = field(default=True, metadata={
        "help": "weight each token's policy loss by min(π_old/π_vllm, cap): truncated importance sampling for the "
                "trainer/server mismatch (the mismatch is logged either way)"})
    vllm_importance_sampling_cap: float = field(default=3.0, metadata={"help": "the cap of those weights"})
    missing_eos_penalty: float = field(default=-1.0, metadata={"help": "added to the score of an answer with no EOS"})
    missing_think_penalty: float = field(default=-0.5, metadata={"help": "added when </think> is never closed"})
    # reward
    reward: Reward = field(default="combined", metadata={"help": "combined (rules + teacher) | rules"})
    score_clip: float | None = field(default=None, metadata={"help": "clip scores to ±value; none: off"})
    score_norm: bool = field(default=False, metadata={"help": "scale scores by their global-batch std"})
    score_baseline: Baseline = field(default="none", metadata={
        "help": "none | group: subtract from each score the mean score of the same prompt's other rollouts "
                "(leave-one-out, RLOO), so the advantage compares answers to one question, not easy questions to "
                "hard ones; needs samples_per_prompt >= 2"})
    # checkpoints, logs
    save_steps: int = field(default=50, metadata={
        "help": "checkpoint every N steps (and at the end); 0: no checkpoints (benchmarks), the final model only"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept"})
    sample_steps: int = field(default=10, metadata={"help": "write sample rollouts every N steps"})
    samples_per_log: int = field(default=4, metadata={"help": "rollouts written to samples.jsonl every sample_steps "
                                                              "(GRPO's option of the same name)"})
    report_to: Literal["tensorboard", "none"] = "tensorboard"
    progress_bar: bool = True
    cpu_threads: int = field(default=0, metadata={
        "help": "torch CPU threads per process (0: torch's default); 1 avoids oversubscription on a busy CPU"})

    def __post_init__(self):
        positive = ("total_steps", "batch_size", "mini_batch_size", "ppo_epochs", "forward_batch_size",
                    "max_new_tokens", "sample_steps", "save_total_limit")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.check_prompts()
        self.check_reward()
        if self.save_steps < 0:
            raise ValueError(f"save_steps must be >= 0 (0: no checkpoints), got {self.save_steps}")
        if self.samples_per_prompt < 1 or self.batch_size % self.samples_per_prompt:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of samples_per_prompt "
                             f"{self.samples_per_prompt} (>= 1)")
        if self.score_baseline not in BASELINES:
            raise ValueError(f"score_baseline must be one of {', '.join(BASELINES)}; got {self.score_baseline!r}")
        if self.score_baseline == "group" and self.samples_per_prompt < 2:
            raise ValueError("score_baseline group needs samples_per_prompt >= 2 (a prompt's other rollouts are "
                             "its baseline)")
        if self.batch_size % self.mini_batch_size:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of mini_batch_size {self.mini_batch_size}")
        if self.learning_rate <= 0 or self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("learning_rate > 0, temperature > 0 and 0 < top_p <= 1 are required")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0 (1: off), got {self.repetition_penalty}")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ValueError("gamma and lam must be in [0, 1]")
        if self.kl_estimator not in ("k1", "k3"):
            raise ValueError(f"kl_estimator must be k1 or k3; got {self.kl_estimator!r}")
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {', '.join(REWARDS)}; got {self.reward!r}")
        if self.lr_scheduler_type not in ("constant", "linear"):
            raise ValueError(f"lr_scheduler_type must be constant or linear; got {self.lr_scheduler_type!r}")
        if self.report_to not in ("tensorboard", "none"):
            raise ValueError(f"report_to must be tensorboard or none; got {self.report_to!r}")
        if self.kl_target <= 0 or self.kl_horizon <= 0 or self.init_kl_coef < 0:
            raise ValueError("kl_target > 0, kl_horizon > 0 and init_kl_coef >= 0 are required")
        if self.vllm_server_timeout <= 0 or self.vllm_importance_sampling_cap < 1:
            raise ValueError("vllm_server_timeout > 0 and vllm_importance_sampling_cap >= 1 are required")
        if self.target_kl is not None and self.target_kl <= 0:
            raise ValueError("target_kl must be > 0 (or none to disable the early stop)")


def run_settings(model_args: PPOModelArguments, cfg: PPOConfig, teacher_args: TeacherArgs | None = None) -> dict:
    """The settings a resumed run must share with its checkpoint: every shaping option (medqa/runs/checkpoints.py, SHAPING)."""
    return shaping_settings(model_args, cfg, teacher_args or TeacherArgs())


def parse_args(argv: list[str]) -> tuple[PPOModelArguments, PPOConfig, TeacherArgs]:
    """`--config RECIPE` plus overrides -> the three dataclasses (unknown options are errors; a teacher URL with
    user:password on the command line is refused: MEDQA_TEACHER_BASE_URL)."""
    from medqa.runs.recipes import parse_recipe_args
    from medqa.teacher.setup import refuse_credentials_on_command_line

    refuse_credentials_on_command_line(argv)
    return parse_recipe_args((PPOModelArguments, PPOConfig, TeacherArgs), argv)
