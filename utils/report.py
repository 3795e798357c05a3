"""`python -m utils.report`: turn results/ into generated text; nothing here is typed by hand.

Today it rewrites the README's results table (between the `results:start` / `results:end` markers)
from the run records in results/runs/.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from .experiment import load_results

README = Path("README.md")
START, END = "<!-- results:start -->", "<!-- results:end -->"


def results_table(folder: str | Path = "results/runs") -> str:
    """Markdown table of every run record: one row per run, best test accuracy first."""
    records = sorted(load_results(folder), key=lambda r: -r["test"]["acc"])
    lines = ["| run | profile | device | epochs | params | test acc (95% CI) | test AUC | macro-F1 | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        low, high = r["test"].get("acc_ci95", (float("nan"), float("nan")))
        lines.append(f"| {r.get('tag') or r['model']} | {r['profile']} | {r['device']} | {r['epochs_run']} | "
                     f"{r['params'] / 1e6:.2f}M | {100 * r['test']['acc']:.2f}% ({100 * low:.1f}-{100 * high:.1f}) | "
                     f"{r['test']['auc']:.4f} | {r['test']['macro_f1']:.4f} | {r['train_seconds']:.0f} |")
    if not records:
        lines.append("| (no runs yet) | | | | | | | | |")
    return "\n".join(lines)


def update_readme(readme: Path = README, folder: str | Path = "results/runs") -> bool:
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme}: add the markers {START} and {END} where the results table goes")
    block = f"{START}\n{results_table(folder)}\n{END}"
    new = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    readme.write_text(new)
    return new != text


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m utils.report", description=__doc__)
    parser.add_argument("--readme", default=str(README))
    parser.add_argument("--results", default="results/runs")
    args = parser.parse_args(argv)
    changed = update_readme(Path(args.readme), args.results)
    print(f"{args.readme}: results table {'updated' if changed else 'already current'}")


if __name__ == "__main__":
    main()
