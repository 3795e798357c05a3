"""Figures for the notebooks and the report; each ``save_figure`` writes PNG (README) and PDF (report)."""
from __future__ import annotations

import re

from pathlib import Path

import matplotlib

matplotlib.use("Agg") if matplotlib.get_backend().lower() == "agg" else None
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import seaborn as sns

from .storage import atomic_write

# Figures are drawn at the size they print: the report's text is 5.5 in wide (report/medcnn.sty) and
# includes every figure at its natural size, so a font set here is the font a reader sees (never below 8 pt).
TEXT_WIDTH = 5.5
MIN_FONT = 8
plt.rcParams.update({"font.size": MIN_FONT, "axes.titlesize": MIN_FONT + 1, "axes.labelsize": MIN_FONT,
                     "xtick.labelsize": MIN_FONT, "ytick.labelsize": MIN_FONT, "legend.fontsize": MIN_FONT,
                     "figure.titlesize": MIN_FONT + 1})



ABBREVIATIONS = {"immature granulocytes": "IG"}
CAM_TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}  # pytorch-grad-cam's method keys, as the text spells them


def typeset(label: str) -> str:
    """A label as print sets it: '1.5x input' -> '1.5\u00d7 input' (labels are typed in ASCII in the code)."""
    return re.sub(r"(?<=\d)x(?=\d|\b)", "\u00d7", label)


def short_names(class_names: list[str]) -> list[str]:
    """Labels that fit a plot: 'immature granulocytes(myelocytes, ...)' -> 'IG'."""
    names = [n.split("(")[0].strip() for n in class_names]
    return [ABBREVIATIONS.get(n, n) for n in names]


def save_figure(fig, name: str, profile, folder: str | Path | None = None) -> Path:
    """``fig`` as ``<name>.png`` and ``.pdf`` in ``folder`` (default: the profile's figures folder)."""
    from .profiles import output_dir
    folder = Path(folder) if folder else output_dir("figures", profile)
    atomic_write(folder / f"{name}.png", lambda f: fig.savefig(f, format="png", dpi=150, bbox_inches="tight"))
    # No creation date in the PDF, so re-running a notebook leaves an unchanged figure byte-identical.
    atomic_write(folder / f"{name}.pdf", lambda f: fig.savefig(f, format="pdf", bbox_inches="tight",
                                                               metadata={"CreationDate": None}))
    return folder / f"{name}.png"


def plot_class_counts(counts: dict[str, list[int]], class_names: list[str]):
    fig, ax = plt.subplots(figsize=(0.85 * TEXT_WIDTH, 2.4))
    names = short_names(class_names)
    width = 0.8 / len(counts)
    for i, (split, values) in enumerate(counts.items()):
        ax.bar(np.arange(len(names)) + i * width, values, width, label=split)
    ax.set_xticks(np.arange(len(names)) + width * (len(counts) - 1) / 2, names, rotation=30, ha="right")
    ax.set_ylabel("images")
    ax.legend(frameon=False)
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
        row[0].set_ylabel(names[c], rotation=0, ha="right", va="center")
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
    axes[-1].legend()
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
    axes[1].legend()
    return fig


def plot_confusion_matrix(matrix, class_names: list[str], normalize: bool = True):
    m = np.asarray(matrix, dtype=float)
    if normalize:
        m = m / m.sum(1, keepdims=True).clip(min=1)
    # Percent of each true class as whole numbers: two digits per cell stay legible at print size.
    fig, ax = plt.subplots(figsize=(2.3, 2.25))
    names = short_names(class_names)
    sns.heatmap(100 * m if normalize else m, annot=True, fmt=".0f" if normalize else "d", cmap="Blues",
                xticklabels=names, yticklabels=names, ax=ax, cbar=False, annot_kws={"fontsize": MIN_FONT})
    ax.set(xlabel="predicted", ylabel="true")
    ax.tick_params(axis="x", rotation=90)
    ax.tick_params(axis="y", rotation=0)
    return fig


def plot_reliability(curves: dict[str, dict]):
    """curves: label -> ``metrics.reliability_curve`` output. Marker area grows with the bin's image count, so a
    bin of a handful of images, whose accuracy can be anything, does not read like one of thousands. The area goes
    with the square root of the count: linear in it, every bin but the most confident one was too small to see."""
    fig, ax = plt.subplots(figsize=(2.25, 2.25))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    largest = max((max(c["count"]) for c in curves.values() if c["count"]), default=1)
    for label, c in curves.items():
        line, = ax.plot(c["confidence"], c["accuracy"], "-", lw=1, label=label)
        ax.scatter(c["confidence"], c["accuracy"], s=[2 + 40 * (n / largest) ** 0.5 for n in c["count"]], color=line.get_color(),
                   zorder=3, clip_on=False)
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, frameon=False, columnspacing=0.8, handlelength=1.5)
    return fig


def plot_params_vs_accuracy(rows: list[dict]):
    """rows: dicts with name, params, acc."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in rows:
        ax.scatter(r["params"] / 1e6, 100 * r["acc"], s=40)
        ax.annotate(r["name"], (r["params"] / 1e6, 100 * r["acc"]), xytext=(4, 2),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set(xlabel="parameters (millions, log scale)", ylabel="test accuracy (%)")
    return fig


def plot_image_grid(images: list[np.ndarray], titles: list[str], columns: int = 8, width: float = TEXT_WIDTH - 0.3):
    """Images in a grid ``width`` inches wide, each titled (one or two lines; a long title may reach past its
    tile, hence the margin under the text width)."""
    rows = max(1, int(np.ceil(len(images) / columns)))  # one empty row says that there is nothing to show
    tile = width / columns
    fig, axes = plt.subplots(rows, columns, figsize=(width, rows * (tile + 0.3)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    if not images:
        fig.text(0.5, 0.5, "no such image in this split", ha="center", va="center")
    for ax, img, title in zip(axes.flat, images, titles):
        ax.imshow(img)
        ax.set_title(title, pad=2)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.95, wspace=0.05, hspace=0.5)
    return fig


def architecture_rows(model, image_size: int = 28) -> list[dict]:
    """One row per EfficientNet stage, read off the module itself: blocks, kernel, channels,
    attention, output resolution and parameters."""
    import torch
    shapes = {}
    hooks = [s.register_forward_hook(lambda m, i, o, k=k: shapes.__setitem__(k, tuple(o.shape)))
             for k, s in enumerate(model.stages)]
    model.eval()(torch.rand(1, 3, image_size, image_size))
    for h in hooks:
        h.remove()
    stem_resolution = -(-image_size // model.stem[0].stride[0])
    rows = [{"stage": "stem", "blocks": 1, "kernel": model.stem[0].kernel_size[0],
             "channels": model.stem[0].out_channels, "attention": "-",
             "params": sum(p.numel() for p in model.stem.parameters()), "resolution": stem_resolution}]
    for k, stage in enumerate(model.stages):
        block = stage[0]
        rows.append({"stage": f"MBConv stage {k + 1}", "blocks": len(stage),
                     "kernel": block.depthwise[0].kernel_size[0], "channels": block.project[0].out_channels,
                     "attention": {"Identity": "-", "SqueezeExcite": "SE", "CBAM": "CBAM"}[type(block.attention).__name__],
                     "params": sum(p.numel() for p in stage.parameters()), "resolution": shapes[k][-1]})
    rows.append({"stage": "head (1x1 conv, pool, dropout, linear)", "blocks": 1, "kernel": 1,
                 "channels": model.head_conv[0].out_channels, "attention": "-",
                 "params": sum(p.numel() for p in model.head_conv.parameters()) +
                 sum(p.numel() for p in model.classifier.parameters()), "resolution": 1})
    return rows


def plot_architecture(rows: list[dict], title: str = ""):
    """Boxes whose height follows log(channels) and width the block count, annotated."""
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH, 2.1))
    x = 0.0
    for r in rows:
        width = 1.35 + 0.12 * r["blocks"]
        height = np.log2(r["channels"]) / np.log2(1280)
        colour = {"SE": "#e07b39", "CBAM": "#7b39e0"}.get(r["attention"], "#3978e0")
        ax.add_patch(matplotlib.patches.FancyBboxPatch((x, (1 - height) / 2), width, height,
                                                       boxstyle="round,pad=0.02", fc=colour, alpha=0.75))
        res = f"{r['resolution']}\u00d7{r['resolution']}" if r["resolution"] else ""
        label = r["stage"].split(" (")[0].replace("MBConv stage ", "stage ")
        ax.text(x + width / 2, 0.5, f"{label}\n{r['blocks']}\u00d7 k{r['kernel']}\n"
                f"{r['channels']} ch\n{res}\n{r['attention'] if r['attention'] != '-' else ''}",
                ha="center", va="center", color="white")
        x += width + 0.15
    # Room for the rounded boxes' padding on both sides: the last box must not touch the edge.
    ax.set_xlim(-0.15, x)
    ax.set_ylim(-0.02, 1.02)
    ax.axis("off")
    ax.set_title(title)
    return fig


def plot_cam_panel(images, cams: dict, examples: dict, class_names: list[str], correct: bool, per_class: int = 1,
                   limit: int = 12):
    """(image, one overlay per CAM method) for the correct or the wrong predictions: up to ``per_class``
    examples of every true class (so every class is shown), at most ``limit``, two examples a row."""
    from .explain import overlay
    names = short_names(class_names)
    shown: dict[int, int] = {}
    chosen = []
    for i, ok in enumerate(examples["correct"]):
        true = examples["true"][i]
        if bool(ok) == correct and shown.get(true, 0) < per_class and len(chosen) < limit:
            shown[true] = shown.get(true, 0) + 1
            chosen.append(i)
    tiles, titles = [], []
    for i in chosen:
        tiles.append(images[i].permute(1, 2, 0).numpy())
        titles.append(f"{names[examples['true'][i]]}\n\u2192 {names[examples['pred'][i]]}")
        for method, maps in cams.items():
            tiles.append(overlay(images[i], maps[i]))
            titles.append(CAM_TITLES.get(method, method))
    return plot_image_grid(tiles, titles, columns=2 * (1 + len(cams)))


def seed_note(rows: list[dict]) -> str:
    """What the error bars of a study's rows are: the spread over seeds, or nothing where a row has one seed."""
    seeds = {r["seeds"] for r in rows}
    if seeds == {1}:
        return "one seed per row: no spread between seeds"
    return f"mean \u00b1 sd over {'/'.join(map(str, sorted(seeds)))} seeds"


def plot_metric_bars(rows: list[dict], metric: str = "val_acc", baseline: str | None = None,
                     title: str = ""):
    """A metric's seed mean per row with standard-deviation error bars: points on an axis fitted to them (a bar
    from zero would hide the differences, a bar from a cut axis would exaggerate them); with ``baseline``, bars of
    the difference from that row (in percentage points). The title says what the error bars are."""
    base = next((r[f"{metric}_mean"] for r in rows if r["name"] == baseline), 0.0) if baseline else 0.0
    names = [r["name"] for r in rows]
    values = [100 * (r[f"{metric}_mean"] - base) for r in rows]
    errors = [100 * r[f"{metric}_std"] for r in rows]
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH, 0.22 * len(rows) + 0.8))
    colors = ["#e07b39" if n == baseline else "#3978e0" for n in names]
    if baseline:
        ax.barh(names, values, xerr=errors, color=colors, capsize=3)
        ax.axvline(0, color="grey", lw=0.8)
    else:
        ax.errorbar(values, names, xerr=errors, fmt="o", color="#3978e0", capsize=3)
    ax.invert_yaxis()
    label = metric.replace("_", " ")
    ax.set_xlabel(f"{label} - {baseline} (points)" if baseline else f"{label} (%)")
    ax.set_title(typeset(f"{title} ({seed_note(rows)})" if title else seed_note(rows)))
    return fig


def plot_roc_curves(curves: dict[str, tuple]):
    """ROC curves from {label: (y_true, p_positive)}, AUC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve
    # The legend sits beside the axes: inside, nine entries would cover the curves.
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH, 1.8))
    for label, (y, p) in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, lw=1.2, label=f"{typeset(label)} (AUC {roc_auc_score(y, p):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="1 \u2212 specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, handlelength=1.0, handletextpad=0.4,
              labelspacing=0.25)
    return fig


def plot_per_class_recall(rows: list[dict], class_names: list[str]):
    """Grouped bars: test recall per class (seed mean, std as error bars) for each row (strategy)."""
    names = short_names(class_names)
    x = np.arange(len(names))
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH, 2.6))
    for i, r in enumerate(rows):
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, r["recall_mean"], width, yerr=r["recall_std"],
               label=r["name"], capsize=2)
    ax.set_xticks(x, names)
    ax.set_ylabel("test recall")
    ax.set_ylim(max(0, min(min(r["recall_mean"]) for r in rows) - 0.15), 1.0)
    ax.legend(ncol=2, frameon=False)
    return fig


def plot_scaling(scaling: dict):
    """Validation metrics against training patches (log axis), each with its fitted line extended to its
    target, and the test metrics beside them (not fitted)."""
    n = np.array(scaling["train_n"], dtype=float)
    fits = scaling["fits"]
    fig, axes = plt.subplots(1, len(fits), figsize=(TEXT_WIDTH, 2.6))
    for ax, (metric, fit) in zip(np.atleast_1d(axes), fits.items()):
        name = {"auc": "AUC", "acc": "accuracy"}.get(metric, metric)
        ax.plot(n, scaling[f"val_{metric}"], "o", label="validation (fitted)")
        ax.plot(n, scaling[f"test_{metric}"], "s", mfc="none", label="test (not fitted)")
        reach = fit["patches_for_target"] if np.isfinite(fit["patches_for_target"]) else n.max()
        xs = np.geomspace(n.min(), max(n.max(), min(reach, 1e7)), 50)
        ax.plot(xs, fit["intercept"] + fit["per_tenfold"] * np.log10(xs), "--", lw=1, label="line fitted to validation")
        ax.axhline(fit["target"], color="grey", lw=0.8, ls=":", label="target")
        ax.set_xscale("log")
        # The measured sizes as ticks: matplotlib's log minor labels (3x10^3, 4x10^3, ...) overlap here.
        ticks = list(n) + ([reach] if reach > n.max() else [])
        ax.xaxis.set_major_locator(mticker.FixedLocator(ticks))
        ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda x, _: f"{x / 1000:.3g}k"))
        ax.xaxis.set_minor_locator(mticker.NullLocator())
        ax.tick_params(axis="x", rotation=45)
        ax.set_xlabel("training patches")
        ax.set_ylabel(name)
        ax.set_title(f"{name}: {fit['per_tenfold']:+.3f} per 10\u00d7 patches".replace("-", "\u2212"))
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return fig


def plot_paired_attention(rows: list[dict]):
    """Official test accuracy of each backbone's no-attention row and its attention variants (the ``paired`` summary's
    attention rows), one panel per backbone: each stored run a dot coloured by seed, a seed's runs on neighbouring
    labels joined by a line (the paired runs), parameters under each label; a variant with no run yet says pending."""
    attention = [r for r in rows if r["group"] == "attention"]
    backbones = list(dict.fromkeys(r["backbone"] for r in attention))
    widths = [1 + len([r for r in attention if r["backbone"] == b]) for b in backbones]
    fig, axes = plt.subplots(1, len(backbones), figsize=(TEXT_WIDTH, 2.6), sharey=True,
                             gridspec_kw={"width_ratios": widths})
    axes = np.atleast_1d(axes)
    seeds = sorted({int(s) for r in attention for side in ("variant", "base") for s in r[f"{side}_test_acc_by_seed"]})
    colors = dict(zip(seeds, sns.color_palette("colorblind", max(1, len(seeds)))))
    for ax, backbone in zip(axes, backbones):
        group = [r for r in attention if r["backbone"] == backbone]
        columns = [(group[0]["base"], group[0].get("base_params"), group[0]["base_test_acc_by_seed"])]
        columns += [(r["variant_shown"], r.get("variant_params"), r["variant_test_acc_by_seed"]) for r in group]
        for seed in seeds:
            points = [(x, 100 * by_seed[str(seed)]) for x, (_, _, by_seed) in enumerate(columns) if str(seed) in by_seed]
            ax.plot(*zip(*points), "o", color=colors[seed], ms=3.5, label=f"seed {seed}") if points else None
            for (x0, y0), (x1, y1) in zip(points, points[1:]):
                if x1 == x0 + 1:  # a line joins the same seed on neighbouring labels only, never across a gap
                    ax.plot([x0, x1], [y0, y1], "-", color=colors[seed], lw=0.8, alpha=0.8)
        for x, (_, _, by_seed) in enumerate(columns):
            if not by_seed:
                ax.annotate("pending", (x, 0.5), xycoords=("data", "axes fraction"), ha="center", rotation=90,
                            color="grey")
        ax.set_xticks(range(len(columns)), [f"{typeset(label)}\n{p / 1e6:.2f}M" if p else typeset(label)
                                            for label, p, _ in columns])
        ax.set_xlim(-0.5, len(columns) - 0.5)
        ax.set_title(typeset(backbone))
        ax.grid(axis="y", lw=0.3)
    axes[0].set_ylabel("official test accuracy (%)")
    handles, names = max((ax.get_legend_handles_labels() for ax in axes), key=lambda h: len(h[1]))
    if handles:
        fig.legend(handles, names, loc="lower center", ncol=len(names), frameon=False, bbox_to_anchor=(0.5, 0.98))
    return fig
