import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from utils.metrics import bootstrap_accuracy_ci, classification_metrics, expected_calibration_error


def _probs(labels, num_classes, seed, skill=2.0):
    # Synthetic scores that are informative but imperfect.
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(labels), num_classes))
    logits[np.arange(len(labels)), labels] += skill
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_metrics_agree_with_medmnist_evaluator(blood):
    from pathlib import Path

    from medmnist import Evaluator
    labels = blood.splits["test"].labels.numpy()
    probs = _probs(labels, 8, seed=0)
    evaluator = Evaluator("bloodmnist", "test", root=str(Path(blood.source).parent))
    auc, acc = evaluator.evaluate(probs)
    m = classification_metrics(labels, probs, blood.class_names)
    assert m["acc"] == pytest.approx(acc, abs=1e-6)
    assert m["auc"] == pytest.approx(auc, abs=1e-6)


def test_metrics_agree_with_scikit_learn():
    labels = np.random.default_rng(1).integers(0, 5, 700)
    probs = _probs(labels, 5, seed=1, skill=1.0)
    m = classification_metrics(labels, probs)
    pred = probs.argmax(1)
    assert m["acc"] == pytest.approx(accuracy_score(labels, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(labels, pred, average="macro"))
    assert m["auc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr"))
    assert np.array(m["confusion_matrix"]).sum() == 700
    recall = [m["per_class"][str(c)]["recall"] for c in range(5)]
    assert recall == pytest.approx([(pred[labels == c] == c).mean() for c in range(5)])


def test_binary_auc_uses_the_positive_class():
    labels = np.array([0, 0, 1, 1, 1, 0])
    p1 = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.2])
    m = classification_metrics(labels, np.stack([1 - p1, p1], 1), bootstrap=False)
    assert m["auc"] == pytest.approx(roc_auc_score(labels, p1))


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident():
    labels = np.array([0] * 80 + [1] * 20)
    calibrated = np.tile([0.8, 0.2], (100, 1))
    assert expected_calibration_error(labels, calibrated) == pytest.approx(0.0)
    overconfident = np.tile([0.99, 0.01], (100, 1))
    assert expected_calibration_error(labels, overconfident) == pytest.approx(0.19)


def test_bootstrap_interval_brackets_the_accuracy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 2000)
    pred = np.where(rng.random(2000) < 0.9, labels, (labels + 1) % 3)
    low, high = bootstrap_accuracy_ci(labels, pred)
    acc = (pred == labels).mean()
    assert low < acc < high and high - low < 0.04


def test_temperature_scaling_recovers_a_known_temperature():
    from utils.metrics import apply_temperature, fit_temperature
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(8000, 4))
    calibrated = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    # Labels drawn from the probabilities make them calibrated by construction.
    labels = np.array([rng.choice(4, p=p) for p in calibrated])
    overconfident = apply_temperature(calibrated, 0.5)
    t = fit_temperature(overconfident, labels)
    assert t == pytest.approx(2.0, rel=0.1)
    assert expected_calibration_error(labels, apply_temperature(overconfident, t)) < \
        expected_calibration_error(labels, overconfident)


def test_the_bootstrap_interval_of_a_seed_mean_resamples_the_same_images_for_every_seed():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 2000)
    right, wrong = labels.copy(), (labels + 1) % 4
    one = np.where(rng.random(2000) < 0.9, right, wrong)
    assert bootstrap_accuracy_ci(labels, np.stack([one, one])) == bootstrap_accuracy_ci(labels, one)
    # Two seeds wrong on disjoint images (90% and 80% right): the mean, 85%, sits inside the interval, and because
    # each resample draws the same images for both, the interval is that of the per-image mean hit rate.
    other = np.where(one == labels, np.where(rng.random(2000) < 0.8 / 0.9, right, wrong), right)
    low, high = bootstrap_accuracy_ci(labels, np.stack([one, other]))
    mean = ((one == labels).mean() + (other == labels).mean()) / 2
    assert low < mean < high and high - low < 0.03
