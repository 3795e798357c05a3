import json

import pytest

from utils.report import END, START, update_readme


def _record(tag, acc):
    return {"model": "simple_cnn", "tag": tag, "profile": "cpu", "device": "cpu", "epochs_run": 3,
            "params": 288488, "train_seconds": 12.0,
            "test": {"acc": acc, "acc_ci95": [acc - 0.01, acc + 0.01], "auc": 0.99, "macro_f1": 0.9}}


def test_readme_table_comes_from_the_records(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "a.json").write_text(json.dumps(_record("a", 0.9)))
    (runs / "b.json").write_text(json.dumps(_record("b", 0.95)))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold\n{END}\noutro\n")
    assert update_readme(readme, runs)
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro") and text.endswith("outro\n")
    assert text.index("| b |") < text.index("| a |")  # best first
    assert "95.00% (94.0-96.0)" in text
    assert not update_readme(readme, runs)  # idempotent


def test_missing_markers_are_reported(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        update_readme(readme, tmp_path)
