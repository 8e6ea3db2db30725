"""KL-to-reference coefficient controllers (Ziegler et al. 2019).

The target is the KL *per sequence*: the sum over the response tokens of the per-token estimate, averaged over
the batch. `AdaptiveKLController.update` moves the coefficient by at most ±20 % of n/horizon per call.
"""

from __future__ import annotations


class FixedKLController:
    """A constant coefficient."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """coef ← coef · (1 + clip(KL/target − 1, −0.2, 0.2) · n/horizon), n = sequences seen this step."""

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        super().__init__(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon
