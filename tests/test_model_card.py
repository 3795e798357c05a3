"""Model cards from a record and stored evaluations alone."""
import json

from tests.conftest import REPO
from utils.model_card import model_card, stored_evaluations, top_confusions
from utils.release import DEPLOYMENT_ROOT, released_records


def test_top_confusions_are_the_largest_off_diagonal_cells():
    names = ["a", "b", "c"]
    assert top_confusions([[9, 1, 4], [0, 8, 0], [2, 3, 7]], names, k=3) == [("a", "c", 4), ("c", "b", 3), ("c", "a", 2)]


def test_card_says_what_is_not_stored_and_uses_what_is(tmp_path):
    record = released_records(REPO / "results" / "runs")[0]
    bare = model_card(record, {"selective": None, "onnx": None, "predict": None, "robustness": None})
    assert "Not for diagnosis" in bare and "Not stored yet" in bare and "Latency not measured" in bare
    assert f"{100 * record['test']['acc']:.2f}%" in bare
    full = model_card(record, stored_evaluations(record, REPO / DEPLOYMENT_ROOT))
    study = json.loads((REPO / DEPLOYMENT_ROOT / "selective" / f"{record['model']}-{record['profile']}.json").read_text())
    assert f"T = {study['predictors'][record['run']]['temperature']:.3f}" in full


def test_committed_cards_are_what_the_stored_files_give():
    for record in released_records(REPO / "results" / "runs"):
        card = (REPO / record["checkpoint"]).with_suffix(".md")
        assert card.read_text() == model_card(record, stored_evaluations(record, REPO / DEPLOYMENT_ROOT)), \
            f"{card.name} is stale: python -m utils.model_card"
