"""The models: the universal PRECISE model and its item-embedding variants (`precise`), the
per-task model (`task`), the contract the trainer, evaluation and export read (`recommender`)
and the non-learned baselines (`baselines`)."""
