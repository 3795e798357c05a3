"""``python -m utils.predict`` on files written from the real test split, with a released checkpoint."""
import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO
from utils.predict import CHECK_TOLERANCE, main, predict_files, prepare_image, write_images
from utils.release import DEPLOYMENT_ROOT, RELEASED_PROFILE, released_records

N = 48


@pytest.fixture(scope="module")
def released():
    """The smallest released checkpoint's record and its stored test predictions."""
    record = min(released_records(REPO / "results" / "runs"), key=lambda r: r["params"])
    record = dict(record, checkpoint=str(REPO / record["checkpoint"]), predictions=str(REPO / record["predictions"]))
    with np.load(record["predictions"]) as npz:
        return record, npz["test_probs"].argmax(1)


def _predicted(rows, names):
    return np.array([names.index(r["prediction"]) for r in rows])


@pytest.mark.parametrize("scale", [1, 8])
def test_the_command_repeats_the_runs_predictions_at_28_and_8x(tmp_path, blood, released, scale):
    record, stored = released
    write_images(blood.splits["test"].images[:N], tmp_path, scale)
    result = predict_files(record["checkpoint"], [tmp_path])
    pred = _predicted(result["rows"], record["class_names"])
    labels = blood.splits["test"].labels.numpy()[:N]
    assert abs((pred == labels).mean() - (stored[:N] == labels).mean()) <= CHECK_TOLERANCE
    assert (pred == stored[:N]).all()
    assert result["threshold"] is not None and all(r["abstain"] in (True, False) for r in result["rows"])


def test_cli_round_trip_on_a_folder_with_odd_and_broken_files(tmp_path, blood, released, capsys):
    record, stored = released
    folder = tmp_path / "images"
    write_images(blood.splits["test"].images[:4], folder)
    rgb = blood.splits["test"].images[0].permute(1, 2, 0).numpy()
    Image.fromarray(rgb).convert("L").save(folder / "gray.png")
    Image.fromarray(rgb).convert("RGBA").save(folder / "rgba.png")
    Image.fromarray(rgb).resize((300, 200)).save(folder / "wide.jpg")
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(folder / "deep.tif")
    (folder / "broken.png").write_bytes(b"not an image at all")
    good = io.BytesIO()
    Image.fromarray(rgb).resize((224, 224)).save(good, "PNG")
    (folder / "truncated.png").write_bytes(good.getvalue()[:200])
    out = tmp_path / "predictions.csv"
    rc = main(["--checkpoint", record["checkpoint"], str(folder), str(tmp_path / "missing.png"), "--out", str(out)])
    rows = {r["file"].split("/")[-1]: r for r in csv.DictReader(out.read_text().splitlines())}
    assert rc == 1 and len(rows) == 11
    for name in ("broken.png", "truncated.png", "missing.png"):
        assert rows[name]["error"] and not rows[name]["prediction"]
    assert "grayscale" in rows["gray.png"]["warning"] and "alpha" in rows["rgba.png"]["warning"]
    assert "8 bits" in rows["deep.tif"]["warning"]
    assert rows["wide.jpg"]["prediction"] in record["class_names"]
    assert [record["class_names"].index(rows[f"{i:05d}.png"]["prediction"]) for i in range(4)] == stored[:4].tolist()
    first = rows["00000.png"]
    top3 = first["top3"].split("; ")
    assert len(top3) == 3 and top3[0].startswith(first["prediction"]) and first["abstain"] in ("yes", "no")
    assert "broken.png: error" in capsys.readouterr().err
    main(["--checkpoint", record["checkpoint"], str(folder / "00000.png"), "--json", "--threshold", "1"])
    result = json.loads(capsys.readouterr().out)
    row = result["rows"][0]
    assert result["threshold"] == 1 and row["abstain"] is (row["probability"] < 1)


def test_prepare_image_crops_the_centre_and_averages_areas():
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, 20:60] = 200  # the centred square is all 200
    assert (prepare_image(Image.fromarray(pixels), 10) == 200).all()
    small = np.arange(28 * 28 * 3, dtype=np.uint8).reshape(28, 28, 3)
    enlarged = Image.fromarray(small).resize((224, 224), Image.Resampling.NEAREST)
    assert (prepare_image(enlarged, 28) == small).all()


def test_the_stored_check_matches_the_recorded_accuracy():
    """The committed whole-test-split check (python -m utils.deployment --only predict)."""
    stored = json.loads((REPO / DEPLOYMENT_ROOT / "predict" / f"test_split_{RELEASED_PROFILE}.json").read_text())
    for run, check in stored["runs"].items():
        for variant in stored["tolerance_applies_to"]:
            v = check["variants"][variant]
            assert v["n"] == 3421 and abs(v["acc"] - check["recorded_test_acc"]) <= stored["tolerance"], (run, variant)
