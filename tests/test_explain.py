import numpy as np
import torch

from utils.explain import compute_cams, overlay, road_scores
from utils.models import build_model
from utils.plots import architecture_rows


def test_gradcam_at_28px_has_spatial_structure(blood):
    torch.manual_seed(0)
    model = build_model("deep_efficientnet", 8).eval()
    images = blood.splits["test"].images[:6].float() / 255
    classes = blood.splits["test"].labels[:6].tolist()
    for method in ("gradcam", "gradcam++"):
        cams = compute_cams(model, images, classes, method)
        assert cams.shape == (6, 28, 28) and np.isfinite(cams).all()
        assert cams.min() >= 0 and cams.max() <= 1
        assert (cams.reshape(6, -1).std(1) > 0).any()  # not a single-pixel (constant) map
    assert overlay(images[0], cams[0]).shape == (28, 28, 3)
    scores = road_scores(model, images[:2], cams[:2], classes[:2], percentiles=(50,))
    assert scores.shape == (2,) and np.isfinite(scores).all()
    state = torch.random.get_rng_state()
    assert np.array_equal(scores, road_scores(model, images[:2], cams[:2], classes[:2], percentiles=(50,)))
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's random state is left alone


def test_architecture_rows_read_the_module():
    rows = architecture_rows(build_model("deep_efficientnet", 8))
    stages = [r for r in rows if r["stage"].startswith("MBConv")]
    assert [r["channels"] for r in stages] == [16, 24, 40, 80]
    assert [r["blocks"] for r in stages] == [1, 2, 4, 16]
    assert [r["resolution"] for r in stages] == [28, 14, 7, 4]
    assert [r["attention"] for r in stages] == ["-", "-", "SE", "SE"]
    assert sum(r["params"] for r in rows) == 1_820_850


def test_plot_labels_are_short(blood):
    from utils.plots import short_names
    names = short_names(blood.class_names)
    assert names[3] == "IG" and names[0] == "basophil" and max(map(len, names)) <= 12
