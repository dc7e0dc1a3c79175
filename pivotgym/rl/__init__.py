"""Learning on sampled actions: GRPO for PivotRL and E2E RL, and the SFT baseline.

- :mod:`~pivotgym.rl.advantages`: group-relative advantages, failures masked.
- :mod:`~pivotgym.rl.loss`: the clipped policy loss and the SFT loss, one function each.
- :mod:`~pivotgym.rl.logprobs`: logprobs of trained tokens only (LM head on those).
- :mod:`~pivotgym.rl.batch`: the sample type (ids + loss mask) and its padding.
- :mod:`~pivotgym.rl.learner`, :mod:`~pivotgym.rl.sft`: the two trainers.
- :mod:`~pivotgym.rl.training`: optimiser, schedule, accumulation, exact-resume checkpoints.
- :mod:`~pivotgym.rl.rollouts`: whole episodes of a policy in envs (E2E RL, evaluation).
"""

from pivotgym.rl.advantages import GroupAdvantages, group_advantages
from pivotgym.rl.batch import TrainSample, collate
from pivotgym.rl.learner import Learner, RLConfig
from pivotgym.rl.logprobs import token_logprobs
from pivotgym.rl.loss import aggregate, policy_loss, sft_loss
from pivotgym.rl.sft import SFTTrainer, sft_sample
from pivotgym.rl.training import BatchCursor, OptimConfig, TrainState

__all__ = [
    "BatchCursor",
    "GroupAdvantages",
    "Learner",
    "OptimConfig",
    "RLConfig",
    "SFTTrainer",
    "TrainSample",
    "TrainState",
    "aggregate",
    "collate",
    "group_advantages",
    "policy_loss",
    "sft_loss",
    "sft_sample",
    "token_logprobs",
]
