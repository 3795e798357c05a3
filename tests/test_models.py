import pytest
import torch

from utils.models import (MODEL_NAMES, build_model, count_parameters, load_checkpoint, lite0_weight_mapping,
                          lite0_weights_path, save_checkpoint)

# Parameter counts for 8 classes; a change here is a change of architecture and must be deliberate.
PARAMS = {
    "simple_cnn": 288_488, "resnet18": 11_172_936, "efficientnet_lite0": 3_381_256,
    "deep_efficientnet": 1_820_850, "efficientnet_b0": 3_381_256, "efficientnet_b0_se": 4_017_796,
    "efficientnet_b0_cbam": 4_010_056, "efficientnet_b0_msff": 3_534_324,
    "cnn_attention": 292_372, "vgg": 1_872_328, "inception": 618_752, "autoencoder": 453_387,
    "deepcmorph_lite": 809_516,
}


def test_registry_has_the_required_models():
    assert set(PARAMS) <= set(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shapes_gradients_and_parameter_counts(name):
    torch.manual_seed(0)
    model = build_model(name, 8)
    assert count_parameters(model) == PARAMS[name]
    for size in (28, 64):
        out = model(torch.rand(2, 3, size, size))
        assert out.shape == (2, 8) and torch.isfinite(out).all()
    loss = out.sum()
    if hasattr(model, "reconstruct"):  # the autoencoder's decoder is trained by reconstruction only
        loss = loss + model.reconstruct(torch.rand(2, 3, 28, 28)).sum()
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not dead, f"parameters without gradient: {dead[:5]}"
    # Grad-CAM needs a target layer that keeps spatial extent at 28x28.
    feats = {}
    model.cam_target_layer().register_forward_hook(lambda m, i, o: feats.setdefault("o", o))
    model.eval()(torch.rand(1, 3, 28, 28))
    assert feats["o"].shape[-1] >= 4


def test_deep_efficientnet_matches_its_specification():
    model = build_model("deep_efficientnet", 8)
    assert 1.5e6 <= count_parameters(model) <= 2.2e6
    assert [stage[-1].project[0].out_channels for stage in model.stages] == [16, 24, 40, 80]
    attention = [type(stage[0].attention).__name__ for stage in model.stages]
    assert attention == ["Identity", "Identity", "SqueezeExcite", "SqueezeExcite"]
    assert model.classifier[2].p == 0.3
    rates = [b.drop_path.p for s in model.stages for b in s if hasattr(b.drop_path, "p")]
    assert rates and max(rates) > 0.15


def test_lite0_imagenet_weights_map_every_backbone_weight():
    source = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    model = build_model("efficientnet_lite0", 8, pretrained=True)
    mapping = lite0_weight_mapping(model)
    assert set(source) - set(mapping.values()) == {"_fc.weight", "_fc.bias"}
    state = model.state_dict()
    for ours, theirs in mapping.items():
        assert state[ours].shape == source[theirs].shape
        assert torch.equal(state[ours], source[theirs])
    assert set(state) - set(mapping) == {"mean", "std", "classifier.3.weight", "classifier.3.bias"}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_checkpoint_round_trip(tmp_path, name):
    torch.manual_seed(0)
    model = build_model(name, 8).eval()
    x = torch.rand(3, 3, 28, 28)
    path = save_checkpoint(tmp_path / "m.pt", model, {"dataset": "bloodmnist", "input_size": 28})
    loaded, meta = load_checkpoint(path)
    assert meta == {"dataset": "bloodmnist", "input_size": 28}
    assert loaded.model_name == name
    assert torch.equal(loaded(x), model(x))


def test_missing_checkpoint_error_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_unknown_model_lists_the_choices():
    with pytest.raises(KeyError, match="deep_efficientnet"):
        build_model("vgg99", 8)


def test_input_scale_resizes_before_the_stem_and_keeps_the_weights():
    torch.manual_seed(0)  # ImageNet features, so that the output depends on what the input shows
    scaled = build_model("efficientnet_lite0", 2, stem_stride=2, input_scale=1.5, pretrained=True).eval()
    plain = build_model("efficientnet_lite0", 2, stem_stride=2).eval()
    plain.load_state_dict(scaled.state_dict())
    x = torch.rand(2, 3, 96, 96)
    resized = torch.nn.functional.interpolate(x, size=(144, 144), mode="bilinear", align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(scaled(x), plain(resized))
        assert not torch.allclose(scaled(x), plain(x))
    assert count_parameters(scaled) == count_parameters(plain)


def test_pool_first_moves_the_pooling_between_the_convolutions_and_nothing_else():
    # The speedrun's block order (airbench's conv, pool, conv): same weights, the second convolution of the first two
    # blocks at half resolution, so fewer FLOPs; the default SimpleCNN keeps its layer names (stored checkpoints load).
    from utils.experiment import count_flops
    plain, pooled = build_model("simple_cnn", 8), build_model("simple_cnn", 8, pool_first=True)
    assert [tuple(p.shape) for p in plain.parameters()] == [tuple(p.shape) for p in pooled.parameters()]
    assert count_flops(pooled, 28) < 0.7 * count_flops(plain, 28)
    assert isinstance(plain.features[0][2], torch.nn.MaxPool2d) and isinstance(pooled.features[0][1], torch.nn.MaxPool2d)
    x = torch.rand(2, 3, 28, 28)
    assert pooled.eval()(x).shape == (2, 8)
    with pytest.raises(RuntimeError):  # the two orders are different networks: a state dict does not cross over
        pooled.load_state_dict(plain.state_dict())


def test_the_whitening_layer_decorrelates_the_patches_it_was_fitted_on_and_is_not_trained():
    import torch.nn.functional as F

    from utils.models import whiten_first_conv
    torch.manual_seed(0)
    model = build_model("simple_cnn", 8, width=16)
    images = (torch.rand(64, 3, 12, 12) * 255).to(torch.uint8)
    images[:, 1] = images[:, 0] // 2 + images[:, 1] // 2  # correlated channels: something to whiten
    whiten_first_conv(model, images, eps=0.0)
    conv = model.features[0][0][0]
    out = F.conv2d(model.normalize(images.float() / 255), conv.weight)  # unpadded: exactly the fitted patches
    half = conv.out_channels // 2
    flat = out[:, :half].transpose(0, 1).reshape(half, -1)
    assert torch.allclose(flat @ flat.T / flat.shape[1], torch.eye(half), atol=1e-3)
    assert torch.equal(out[:, half:], -out[:, :half])
    assert not conv.weight.requires_grad
