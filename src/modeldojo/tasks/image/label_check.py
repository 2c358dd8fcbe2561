"""Suspected label errors in image data: cleanlab on out-of-fold probabilities from frozen features.

The pretrained backbone (before any fine-tuning) embeds every training image once — the input of its
classification head, caught by a forward hook, so any backbone works — and a logistic regression gives
5-fold out-of-fold class probabilities. cleanlab ranks the images whose given label those
probabilities doubt most. Costs one inference pass over the training images.
"""
from __future__ import annotations

import numpy as np

MIN_ROWS, MIN_PER_CLASS, SHOWN = 50, 5, 20


def frozen_features(model, store, size: int, batch: int = 64) -> np.ndarray:
    import torch

    from . import pipeline

    head = dict(model.named_modules())[model.head_names[0]]
    caught = []
    hook = head.register_forward_hook(lambda module, inputs, output: caught.append(inputs[0].flatten(1).float()))
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(store), batch):
                indices = list(range(start, min(len(store), start + batch)))
                pixels = pipeline.centre(store.batch(indices).float().div_(255), size)
                model(pipeline.normalise(pixels, model.spec.mean, model.spec.std))
    finally:
        hook.remove()
    return torch.cat(caught).numpy()


def suspected_label_errors(model, store, size: int, labels: np.ndarray, classes: list[str], names: list[str],
                           seed: int) -> list[dict]:
    """Up to 20 rows, most doubtful first: image, given label, the label the probabilities prefer."""
    counts = np.bincount(labels, minlength=len(classes))
    if len(labels) < MIN_ROWS or counts.min() < MIN_PER_CLASS:
        return []
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = frozen_features(model, store, size)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    probabilities = cross_val_predict(classifier, features, labels, method="predict_proba",
                                      cv=StratifiedKFold(5, shuffle=True, random_state=seed))
    ranked = find_label_issues(labels=labels, pred_probs=probabilities, return_indices_ranked_by="self_confidence")
    return [{"image": names[i], "given": classes[labels[i]], "suggested": classes[int(probabilities[i].argmax())],
             "p_given": round(float(probabilities[i, labels[i]]), 4)} for i in ranked[:SHOWN]]
