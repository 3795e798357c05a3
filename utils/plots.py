"""Figures for the notebooks and the report; each ``save_figure`` writes PNG (README) and PDF (report)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg") if matplotlib.get_backend().lower() == "agg" else None
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

FIGURES = Path("figures")


def short_names(class_names: list[str]) -> list[str]:
    """'immature granulocytes(myelocytes, ...)' -> 'immature granulocytes' for axis labels."""
    return [n.split("(")[0].strip() for n in class_names]


def save_figure(fig, name: str, folder: str | Path = FIGURES) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png", dpi=150, bbox_inches="tight")
    fig.savefig(folder / f"{name}.pdf", bbox_inches="tight")
    return folder / f"{name}.png"


def plot_class_counts(counts: dict[str, list[int]], class_names: list[str]):
    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = short_names(class_names)
    width = 0.8 / len(counts)
    for i, (split, values) in enumerate(counts.items()):
        ax.bar(np.arange(len(names)) + i * width, values, width, label=split)
    ax.set_xticks(np.arange(len(names)) + width * (len(counts) - 1) / 2, names, rotation=30, ha="right")
    ax.set_ylabel("images")
    ax.legend()
    ax.set_title("Images per class and split")
    return fig


def plot_sample_grid(images: np.ndarray, labels: np.ndarray, class_names: list[str], per_class: int = 8,
                     seed: int = 0):
    """images: N x 3 x H x W uint8."""
    rng = np.random.default_rng(seed)
    names = short_names(class_names)
    fig, axes = plt.subplots(len(names), per_class, figsize=(per_class * 0.9, len(names) * 0.95))
    for c, row in enumerate(axes):
        index = rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
        for ax, i in zip(row, index):
            ax.imshow(images[i].transpose(1, 2, 0))
            ax.set_xticks([]), ax.set_yticks([])
        row[0].set_ylabel(names[c], rotation=0, ha="right", va="center", fontsize=8)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


def plot_channel_histograms(images: np.ndarray, labels: np.ndarray, class_names: list[str]):
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)
    names = short_names(class_names)
    for ch, (ax, colour) in enumerate(zip(axes, ("red", "green", "blue"))):
        for c, name in enumerate(names):
            values = images[labels == c, ch].ravel()
            ax.hist(values, bins=64, range=(0, 255), histtype="step", density=True, label=name)
        ax.set_title(f"{colour} channel")
        ax.set_xlabel("intensity")
    axes[0].set_ylabel("density")
    axes[-1].legend(fontsize=7)
    return fig


def plot_training_curves(records: list[dict], metric: str = "val_acc"):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for r in records:
        epochs = [h["epoch"] for h in r["history"]]
        label = r.get("tag") or r["model"]
        axes[0].plot(epochs, [h["train_loss"] for h in r["history"]], label=label)
        axes[1].plot(epochs, [h[metric] for h in r["history"]], label=label)
    axes[0].set(xlabel="epoch", ylabel="train loss")
    axes[1].set(xlabel="epoch", ylabel=metric.replace("_", " "))
    axes[1].legend(fontsize=8)
    return fig


def plot_confusion_matrix(matrix, class_names: list[str], normalize: bool = True):
    m = np.asarray(matrix, dtype=float)
    if normalize:
        m = m / m.sum(1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    names = short_names(class_names)
    sns.heatmap(m, annot=True, fmt=".2f" if normalize else "d", cmap="Blues", xticklabels=names,
                yticklabels=names, ax=ax, cbar=False, annot_kws={"fontsize": 7})
    ax.set(xlabel="predicted", ylabel="true")
    ax.tick_params(axis="x", rotation=35)
    return fig


def plot_reliability(curves: dict[str, dict]):
    """curves: label -> ``metrics.reliability_curve`` output."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for label, c in curves.items():
        ax.plot(c["confidence"], c["accuracy"], "o-", ms=3, label=label)
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8)
    return fig


def plot_params_vs_accuracy(rows: list[dict]):
    """rows: dicts with name, params, acc."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in rows:
        ax.scatter(r["params"] / 1e6, 100 * r["acc"], s=40)
        ax.annotate(r["name"], (r["params"] / 1e6, 100 * r["acc"]), fontsize=8, xytext=(4, 2),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set(xlabel="parameters (millions, log scale)", ylabel="test accuracy (%)")
    return fig


def plot_image_grid(images: list[np.ndarray], titles: list[str], columns: int = 8):
    rows = int(np.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles):
        ax.imshow(img)
        ax.set_title(title, fontsize=6)
    return fig
