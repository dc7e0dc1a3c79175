"""Policy engines: token ids in, sampled action token ids and their logprobs out."""

from pivotgym.policy.engines.base import Engine, Sample, SamplingParams

__all__ = ["Engine", "Sample", "SamplingParams"]
