import shutil

import numpy as np
import pytest
import torch

from utils.data import (AUGMENT_LEVELS, DataIntegrityError, DeviceLoader, ImageSplit, augment_batch,
                        balanced_sample_weights, class_weights, find_bloodmnist, md5sum)


def test_official_split_sizes_and_classes(blood):
    assert {k: len(v) for k, v in blood.splits.items()} == {"train": 11959, "val": 1712, "test": 3421}
    assert blood.num_classes == 8 and blood.class_names[0] == "basophil"
    assert blood.splits["train"].images.dtype == torch.uint8
    assert blood.splits["train"].images.shape[1:] == (3, 28, 28)
    assert blood.class_counts("train") == [852, 2181, 1085, 2026, 849, 993, 2330, 1643]
    assert blood.md5 == "7053d0359d879ad8a5505303e11de1dc"


def test_wrong_file_names_path_and_md5_and_is_left_untouched(tmp_path, monkeypatch):
    # Synthetic: a damaged file where the data should be.
    bad = tmp_path / "bloodmnist.npz"
    bad.write_bytes(b"not the official release")
    before = md5sum(bad)
    monkeypatch.delenv("MEDMNIST_MIRROR", raising=False)
    with pytest.raises(DataIntegrityError) as err:
        find_bloodmnist(tmp_path)
    message = str(err.value)
    assert str(bad) in message and before in message and "7053d0359d879ad8a5505303e11de1dc" in message
    assert "--data-root" in message
    assert bad.read_bytes() == b"not the official release"


def test_mirror_is_used_when_data_root_is_empty(tmp_path, monkeypatch, blood):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(blood.source, mirror / "bloodmnist.npz")
    monkeypatch.setenv("MEDMNIST_MIRROR", str(mirror))
    assert find_bloodmnist(tmp_path / "empty", download=False) == mirror / "bloodmnist.npz"


def test_failed_download_says_where_it_looked_and_the_fix(tmp_path, monkeypatch):
    import medmnist
    from utils.data import find_bloodmnist

    def offline(*args, **kwargs):
        raise RuntimeError("Automatic download failed!")
    monkeypatch.delenv("MEDMNIST_MIRROR", raising=False)
    monkeypatch.setattr(medmnist, "BloodMNIST", offline)
    with pytest.raises(FileNotFoundError, match="MEDMNIST_MIRROR") as caught:
        find_bloodmnist(tmp_path)
    assert str(tmp_path / "bloodmnist.npz") in str(caught.value) and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("level", AUGMENT_LEVELS)
def test_augmentation_keeps_dtype_shape_range_and_is_reproducible(blood, level):
    x = blood.splits["train"].images[:64].float() / 255
    a = augment_batch(x, level, torch.Generator().manual_seed(3))
    b = augment_batch(x, level, torch.Generator().manual_seed(3))
    c = augment_batch(x, level, torch.Generator().manual_seed(4))
    assert a.dtype == x.dtype and a.shape == x.shape
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    if level == "none":
        assert torch.equal(a, x)
    else:
        assert not torch.equal(a, c)


def test_translation_shifts_each_image_by_at_most_two_pixels_with_a_reflected_border():
    from utils.data import random_translate
    x = torch.rand(64, 3, 28, 28)
    y = random_translate(x, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    offsets = []
    for image, out in zip(padded, y):
        found = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(image[:, dy:dy + 28, dx:dx + 28], out)]
        assert len(found) == 1, "not a shifted copy of its image"
        offsets.append(found[0])
    assert len(set(offsets)) > 10  # the shifts vary image to image, the centre among them
    assert set(range(5)) == {dy for dy, _ in offsets} == {dx for _, dx in offsets}


def test_dihedral_augmentation_only_moves_pixels(blood):
    x = blood.splits["train"].images[:32].float() / 255
    y = augment_batch(x, "basic", torch.Generator().manual_seed(0))
    # flips and 90-degree turns permute pixels: each image keeps its sorted pixel values
    assert torch.equal(x.flatten(1).sort(1).values, y.flatten(1).sort(1).values)


def test_loader_keeps_labels_with_their_images(blood):
    split = ImageSplit(blood.splits["train"].images[:300], blood.splits["train"].labels[:300])
    loader = DeviceLoader(split, 64, shuffle=True, augment="none", generator=torch.Generator().manual_seed(0))
    seen = 0
    lookup = {tuple(img.flatten()[:40].tolist()): int(l) for img, l in zip(split.images, split.labels)}
    for images, labels in loader:
        for img, label in zip(images, labels):
            key = tuple((img * 255).round().to(torch.uint8).flatten()[:40].tolist())
            assert lookup[key] == int(label)
        seen += len(labels)
    assert seen == 300 and len(loader) == 5


def test_class_weights_and_balanced_sampling(blood):
    labels = blood.splits["train"].labels
    w = class_weights(labels, 8)
    counts = torch.bincount(labels, minlength=8).float()
    assert torch.allclose((w * counts).sum(), counts.sum())
    assert w[0] > w[6]  # basophils (852) weigh more than neutrophils (2330)
    drawn = torch.multinomial(balanced_sample_weights(labels, 8), 40000, replacement=True,
                              generator=torch.Generator().manual_seed(0))
    share = torch.bincount(labels[drawn], minlength=8).float() / 40000
    assert torch.allclose(share, torch.full((8,), 1 / 8), atol=0.01)


def test_stratified_subset_keeps_every_class(blood):
    sub = blood.splits["train"].subset(200, seed=0)
    assert 190 <= len(sub) <= 210
    assert len(np.unique(sub.labels.numpy())) == 8
