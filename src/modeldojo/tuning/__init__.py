"""Hyperparameter search (Optuna) over any registered task: spaces, samplers, studies."""
