import numpy as np
import pytest
import torch

from utils.data import (PCAM_SUBSET, DataIntegrityError, find_duplicates, find_pcam, load_pcam, load_pcam_h5)
from utils.metrics import binary_metrics, choose_threshold
from utils.profiles import get_profile


def test_subset_splits_and_copies_dropped(pcam):
    # 10,000/1,500/1,500 per class per split, minus the 975 byte-identical copies (all in class 1).
    sizes = {k: len(v) for k, v in pcam.splits.items()}
    dup = pcam.extra["duplicates"]
    assert sum(d["dropped"] for d in dup.values()) == 975
    assert sum(d["groups"] for d in dup.values()) == 735
    assert sizes == {k: 2 * n - dup[k]["dropped"] for k, n in (("train", 10_000), ("val", 1_500), ("test", 1_500))}
    assert pcam.extra["cross_split_duplicates"] == 0
    assert pcam.class_counts("test")[0] == 1_500
    images = pcam.splits["test"].images
    assert images.dtype == torch.uint8 and tuple(images.shape[1:]) == (3, 96, 96)
    # After dropping copies no two test images are identical.
    flat = images.reshape(len(images), -1)
    assert len(torch.unique(flat, dim=0)) == len(images)


def test_the_committed_pcam_description_is_what_the_data_gives(pcam):
    from tests.conftest import REPO
    from utils.summaries import as_json, describe_dataset
    text = as_json(describe_dataset(pcam, find_pcam(REPO / "data")[1]))
    assert text == (REPO / "results/eda/pcam.json").read_text(), "run make summaries"


def test_find_duplicates_groups_equal_digests():
    assert find_duplicates(["a", "b", "a", "c", "b", "a"]) == [[0, 2, 5], [1, 4]]
    assert find_duplicates(["a", "b"]) == []


def test_wrong_subset_names_path_and_md5_and_is_left_untouched(tmp_path, monkeypatch):
    monkeypatch.delenv("PCAM_MIRROR", raising=False)
    monkeypatch.delenv("MEDMNIST_MIRROR", raising=False)
    bad = tmp_path / PCAM_SUBSET
    bad.write_bytes(b"not a tar")
    with pytest.raises(DataIntegrityError, match="2a0857aeeaa347d9d9548c0005f27ef4") as info:
        load_pcam(tmp_path)
    assert str(bad) in str(info.value)
    assert bad.read_bytes() == b"not a tar"


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("PCAM_MIRROR", raising=False)
    monkeypatch.delenv("MEDMNIST_MIRROR", raising=False)
    with pytest.raises(FileNotFoundError, match="torchvision.datasets.PCAM"):
        find_pcam(tmp_path)


def test_full_release_h5_is_found_and_size_checked(tmp_path):
    h5py = pytest.importorskip("h5py")
    folder = tmp_path / "pcam"
    folder.mkdir()
    for name in ("train", "valid", "test"):
        with h5py.File(folder / f"camelyonpatch_level_2_split_{name}_x.h5", "w") as f:
            f["x"] = np.zeros((4, 96, 96, 3), np.uint8)
        with h5py.File(folder / f"camelyonpatch_level_2_split_{name}_y.h5", "w") as f:
            f["y"] = np.zeros((4, 1, 1, 1), np.uint8)
    assert find_pcam(tmp_path) == ("h5", folder)
    # Four patches are not the official 262,144: a truncated download must not pass silently.
    with pytest.raises(DataIntegrityError, match="train_x.h5"):
        load_pcam_h5(folder)


def test_binary_metrics_at_a_threshold():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.4, 0.6, 0.35, 0.7, 0.9])
    m = binary_metrics(y, p, 0.5)
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(2 / 3)
    assert m["confusion_matrix"] == [[2, 1], [1, 2]]
    t = choose_threshold(y, p)
    assert binary_metrics(y, p, t)["sensitivity"] + binary_metrics(y, p, t)["specificity"] >= 4 / 3


def test_tta_scores_a_stored_run_once_and_reuses_it(pcam, tmp_path, monkeypatch):
    from pathlib import Path
    import utils.experiment as experiment
    from utils.models import load_checkpoint
    from utils.training import dihedral_views
    data_root = Path(__file__).resolve().parent.parent / "data"
    # A narrow SimpleCNN: 8 views of 768 patches at 96x96 cost 15x less than at the default width.
    record = experiment.run_training("simple_cnn", "pcam", "smoke", 0, out=tmp_path / "runs", data_root=data_root,
                                     model_kwargs={"width": 8},
                                     data=experiment.prepare_data("pcam", get_profile("smoke"), data_root,
                                                                  "cpu"))
    monkeypatch.chdir(tmp_path)
    scored = experiment.score_with_tta(record, data_root)
    assert scored["tta"] and scored["run"] == record["run"] and scored["test"]["n"] == record["test"]["n"]
    assert Path(scored["predictions"]).is_file() and scored["tta_scoring"]["git_commit"]
    # The stored probabilities are the mean over the 8 views of the run's checkpoint, image by image.
    model, _ = load_checkpoint(record["checkpoint"])
    images = experiment.prepare_data("pcam", get_profile("smoke"), data_root, "cpu").splits["test"].images[:4]
    with torch.no_grad():
        expected = torch.stack([torch.softmax(model.eval()(v), 1) for v in dihedral_views(images.float() / 255)]).mean(0)
    with np.load(scored["predictions"]) as npz:
        np.testing.assert_allclose(npz["test_probs"][:4], expected.numpy(), atol=1e-5)
    monkeypatch.setattr(experiment, "predict_proba", lambda *a, **k: pytest.fail("scored twice"))
    assert experiment.score_with_tta(record, data_root) == scored
