"""The policy side: the chat format (:mod:`~pivotgym.policy.chat`), sampling engines
(:mod:`~pivotgym.policy.engines`) and the bundled models (:mod:`~pivotgym.policy.models`).
It knows nothing of environments, except that the script pretraining the bundled model
(:mod:`~pivotgym.policy.models.pretrain`) reads the terminal env's corpus."""
