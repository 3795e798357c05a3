"""MedMNIST-C corruptions end to end on a few real test images (skipped where medmnistc or ImageMagick's library
is missing: `make venv` installs medmnistc, .ci/run the library)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import REPO

medmnistc = pytest.importorskip("medmnistc")
try:
    from utils.robustness import POINTWISE, corrupt, corruptions, robustness_predictions, robustness_summary
    corruptions()
except ImportError as error:  # wand raises ImportError without libMagickWand
    pytest.skip(f"MedMNIST-C needs ImageMagick's library: {error}", allow_module_level=True)


def test_bloodmnist_has_its_eleven_corruptions():
    assert set(corruptions()) == {"pixelate", "jpeg_compression", "defocus_blur", "motion_blur", "brightness_up",
                                  "brightness_down", "contrast_up", "contrast_down", "saturate", "stain_deposit", "bubble"}


@pytest.mark.parametrize("name", ["stain_deposit", "motion_blur"])
def test_a_corruption_repeats_keeps_the_shape_and_changes_the_images(blood, name):
    pixels = blood.splits["test"].images[:4].permute(0, 2, 3, 1).numpy()
    a, b = corrupt(pixels, name, 5, seed=1), corrupt(pixels, name, 5, seed=1)
    assert a.shape == pixels.shape and a.dtype == np.uint8 and (a == b).all() and (a != pixels).any()


def test_pointwise_corruptions_are_the_same_at_28_as_at_224(blood):
    pixels = blood.splits["test"].images[:3].permute(0, 2, 3, 1).numpy()
    for name in POINTWISE:
        c = corruptions()[name]
        for p in pixels:
            large = np.asarray(c.apply(Image.fromarray(p).resize((224, 224), Image.Resampling.NEAREST), 4), np.uint8)
            assert (np.asarray(Image.fromarray(large).resize((28, 28), Image.Resampling.BOX)) ==
                    np.asarray(c.apply(Image.fromarray(p), 4))).all(), name


def test_one_corruption_end_to_end_on_a_few_images(tmp_path, blood):
    from utils.models import build_model, save_checkpoint
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "m.pt", build_model("simple_cnn", 8, width=8).eval(), {"input_size": 28})
    record = {"run": "m", "model": "simple_cnn", "seed": 0, "checkpoint": str(checkpoint), "test": {"acc": 0.5}}
    images, labels = blood.splits["test"].images[:16], blood.splits["test"].labels[:16].numpy()
    preds = robustness_predictions([record], images, names=["pixelate"], cache=tmp_path / "cache")
    assert preds["m"]["pixelate"].shape == (5, 16)
    again = robustness_predictions([record], images, names=["pixelate"], cache=tmp_path / "cache")  # from the cache
    assert (again["m"]["pixelate"] == preds["m"]["pixelate"]).all()
    summary = robustness_summary(record, preds["m"], labels)
    assert len(summary["acc"]["pixelate"]) == 5
    assert summary["mean_corruption_acc"] == pytest.approx(np.mean(summary["acc"]["pixelate"]))
    assert summary["relative_drop"] == pytest.approx((0.5 - summary["mean_corruption_acc"]) / 0.5)


def test_stored_robustness_of_the_released_checkpoints():
    from utils.release import DEPLOYMENT_ROOT, released_records
    for record in released_records(REPO / "results" / "runs"):
        stored = json.loads((REPO / DEPLOYMENT_ROOT / "robustness" / f"{record['run']}.json").read_text())
        assert stored["n"] == 3421 and len(stored["corruptions"]) == 11
        assert all(len(a) == 5 and all(0 <= x <= 1 for x in a) for a in stored["acc"].values())
        assert stored["mean_corruption_acc"] < stored["clean_acc"]
