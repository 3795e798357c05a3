"""The deployment figures, drawn from the stored evaluations of ``results/deployment/`` (kept apart from
``utils.plots`` so the two grow without touching each other; the same print size and ``save_figure``)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .plots import TEXT_WIDTH

SCORE_LABELS = {"max_prob": "top probability", "max_prob_temperature": "after temperature scaling",
                "agreement": "seed agreement"}


def _predictor_label(name: str) -> str:
    return "ensemble" if name == "ensemble" else f"seed {name.split('-s')[-1].split('-')[0]}"


def plot_risk_coverage(studies: dict[str, dict]):
    """One panel per model: the test risk-coverage curve of each seed's top probability and, where stored, of
    the seed ensemble (top probability, after temperature scaling, agreement; with one seed, that seed after
    temperature scaling), with AURC in the legend; the dotted lines mark 90% and 95% coverage."""
    fig, axes = plt.subplots(1, len(studies), figsize=(TEXT_WIDTH, 2.5), sharey=True, squeeze=False)
    shown = 0.0  # the highest risk drawn within the x range (below it a handful of images make the risk jump)
    for ax, (model, study) in zip(axes[0], studies.items()):
        for name, predictor in study["predictors"].items():
            if name == "ensemble":
                scores = ("max_prob", "max_prob_temperature", "agreement")
            else:  # a model with one seed shows temperature scaling on that seed
                scores = ("max_prob",) if "ensemble" in study["predictors"] else ("max_prob", "max_prob_temperature")
            for score in scores:
                s = predictor["selective"][score]
                style = {"lw": 1.4} if name == "ensemble" else {"lw": 0.8, "alpha": 0.7}
                coverage, risk = np.array(s["curve_test"]["coverage"]), 100 * np.array(s["curve_test"]["risk"])
                shown = max(shown, risk[coverage >= 0.5].max())
                ax.plot(coverage, risk, label=f"{_predictor_label(name)}, {SCORE_LABELS[score]} ({1000 * s['aurc_test']:.1f})",
                        **style)
        for c in study["coverages"]:
            ax.axvline(c, ls=":", color="grey", lw=0.7)
        ax.set(title=model, xlabel="coverage", xlim=(0.5, 1.0))
        ax.legend(title="AURC x 1000", fontsize=6, title_fontsize=6, loc="upper left")
    axes[0][0].set_ylabel("risk (% errors among answered)")
    axes[0][0].set_ylim(0, 1.6 * shown)  # room for the legend above the curves
    fig.tight_layout()
    return fig


def plot_robustness(summaries: list[dict]):
    """Test accuracy against severity, one panel per corruption, one line per checkpoint; clean accuracy at 0."""
    names = summaries[0]["corruptions"]
    columns = 4
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(TEXT_WIDTH, 1.5 * rows + 0.4), sharex=True, sharey=True)
    axes = axes.ravel()
    for ax, name in zip(axes, names):
        for s in summaries:
            ax.plot(range(0, 6), 100 * np.array([s["clean_acc"]] + s["acc"][name]), marker=".", lw=0.9,
                    label=f"{s['model']} s{s['seed']}")
        ax.set_title(name.replace("_", " "), fontsize=8)
        ax.set_xticks(range(0, 6))
    for ax in axes[len(names):]:
        ax.axis("off")
    handles, labels = axes[0].get_legend_handles_labels()
    axes[-1].legend(handles, labels, loc="center", fontsize=7)
    fig.supxlabel("severity (0 = clean)", fontsize=8)
    fig.supylabel("test accuracy (%)", fontsize=8)
    fig.tight_layout()
    return fig
