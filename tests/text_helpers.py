"""Shared fixtures for text-task tests: the synthetic reviews and the tiny BERT they come with."""
from modeldojo.tasks.text import TextTask


def reviews(kind="multiclass", seed=0):
    frame, target, overrides = TextTask.example(kind, seed=seed)
    return frame, target, overrides


def tiny_model(kind="multiclass"):
    return reviews(kind)[2]["model.name"]
