"""Classification metrics on predicted probabilities, with scikit-learn underneath."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support,
                             precision_score, recall_score, roc_auc_score, roc_curve)


def one_vs_rest_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Macro one-vs-rest AUC; for two classes the AUC of the positive class (as medmnist does)."""
    if probs.shape[1] == 2:
        return float(roc_auc_score(y_true, probs[:, 1]))
    return float(roc_auc_score(y_true, probs, multi_class="ovr", average="macro",
                               labels=np.arange(probs.shape[1])))


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """ECE (Guo et al., 2017): |accuracy - confidence| averaged over equal-width confidence bins."""
    confidence = probs.max(1)
    correct = probs.argmax(1) == y_true
    edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def reliability_curve(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> dict:
    """Per-bin mean confidence, accuracy and count, for reliability diagrams."""
    confidence, correct = probs.max(1), probs.argmax(1) == y_true
    edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    rows = [(confidence[bins == b].mean(), correct[bins == b].mean(), int((bins == b).sum()))
            for b in range(n_bins) if (bins == b).any()]
    conf, acc, count = zip(*rows) if rows else ((), (), ())
    return {"edges": edges.tolist(), "confidence": list(map(float, conf)), "accuracy": list(map(float, acc)),
            "count": list(count)}


def bootstrap_accuracy_ci(y_true: np.ndarray, y_pred: np.ndarray, n_resamples: int = 2000,
                          level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval for accuracy over test images. ``y_pred`` of shape (runs, images), e.g. one
    row per seed: the interval of the runs' mean accuracy, each resample drawing the same images for every run."""
    rng = np.random.default_rng(seed)
    correct = np.atleast_2d(y_true == y_pred)
    n = correct.shape[1]
    index = rng.integers(0, n, size=(n_resamples, n))
    # Hits counted on booleans (a third of the time of a float mean, which a record check repeats for every run
    # read): a sum of 0/1 values is exact, so count / n is the float mean to the last bit.
    means = np.count_nonzero(correct[:, index], axis=2).mean(axis=0) / n
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def classification_metrics(y_true, probs, class_names: list[str] | None = None,
                           bootstrap: bool = True) -> dict:
    """Accuracy, one-vs-rest AUC, macro-F1, ECE, per-class precision/recall/F1, confusion matrix
    and a bootstrap 95% interval for accuracy."""
    y_true, probs = np.asarray(y_true).reshape(-1), np.asarray(probs, dtype=np.float64)
    num_classes = probs.shape[1]
    labels = np.arange(num_classes)
    y_pred = probs.argmax(1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    names = class_names or [str(i) for i in labels]
    out = {
        "n": int(len(y_true)),
        "acc": float(accuracy_score(y_true, y_pred)),
        "auc": one_vs_rest_auc(y_true, probs) if len(np.unique(y_true)) == num_classes else float("nan"),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "ece": expected_calibration_error(y_true, probs),
        "per_class": {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for name, p, r, f, s in zip(names, precision, recall, f1, support)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    if bootstrap:
        out["acc_ci95"] = list(bootstrap_accuracy_ci(y_true, y_pred))
    return out


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """Temperature scaling (Guo et al., 2017): the T > 0 that minimises validation NLL of
    softmax(log p / T). Works from stored probabilities, whose logs are logits up to a constant."""
    import torch
    logits = torch.log(torch.as_tensor(probs, dtype=torch.float64).clamp_min(1e-12))
    target = torch.as_tensor(labels, dtype=torch.long)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), target)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(np.clip(probs, 1e-12, None)) / temperature
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def choose_threshold(y_true, p_positive) -> float:
    """The decision threshold that maximises Youden's J (sensitivity + specificity - 1) on the
    given (validation) predictions."""
    fpr, tpr, thresholds = roc_curve(np.asarray(y_true).reshape(-1), np.asarray(p_positive))
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def binary_metrics(y_true, p_positive, threshold: float = 0.5) -> dict:
    """Accuracy, sensitivity (recall of class 1), specificity, precision and F1 at ``threshold``,
    plus the threshold-free AUC."""
    y_true = np.asarray(y_true).reshape(-1)
    p_positive = np.asarray(p_positive, dtype=np.float64)
    y_pred = (p_positive >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    return {"threshold": float(threshold), "acc": float(accuracy_score(y_true, y_pred)),
            "auc": float(roc_auc_score(y_true, p_positive)),
            "sensitivity": float(recall_score(y_true, y_pred, zero_division=0)),
            "specificity": float(tn / (tn + fp)) if tn + fp else 0.0,
            "precision": float(precision_score(y_true, y_pred, zero_division=0)),
            "f1": float(f1_score(y_true, y_pred, zero_division=0)),
            "confusion_matrix": [[int(tn), int(fp)], [int(fn), int(tp)]], "n": int(len(y_true))}
