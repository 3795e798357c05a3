"""The seed projects' other model families, trained with the same engine as the core models:
a VGG-style network, an Inception-style network, a convolutional autoencoder pre-trained by
reconstruction, and a DeepCMorph-inspired model. Registered by name in ``utils.registry``."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation as ConvBNReLU

from .attention import SqueezeExcite
from .registry import ImageClassifier, register_class


class VGG(ImageClassifier):
    """VGG-style (Simonyan & Zisserman, 2015): stacks of 3x3 conv-BN-ReLU (2, 2, 3 convs of 64/128/256
    channels) with max pooling between stacks, global pooling and a two-layer head with dropout."""

    cam_layer = "features.2"

    def __init__(self, num_classes: int, widths=(64, 128, 256), convs=(2, 2, 3), dropout: float = 0.5, **norm):
        super().__init__(**norm)
        self.min_input_size = 2 ** (len(widths) - 1)  # a 2x2 max-pool between stacks
        stacks, c_in = [], 3
        for i, (width, n) in enumerate(zip(widths, convs)):
            layers = [ConvBNReLU(c_in if j == 0 else width, width, 3) for j in range(n)]
            layers.append(nn.MaxPool2d(2) if i < len(widths) - 1 else nn.Identity())
            stacks.append(nn.Sequential(*layers))
            c_in = width
        self.features = nn.Sequential(*stacks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 2 * c_in), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(2 * c_in, num_classes))

    def forward(self, x):
        return self.head(self.features(self.normalize(x)))


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 -> 3x3 (a 5x5 field, as in
    Inception-v2); 3x3 max-pool -> 1x1."""

    def __init__(self, c_in: int, b1: int, b3: int, b5: int, pool: int):
        super().__init__()
        self.branch1 = ConvBNReLU(c_in, b1, 1)
        self.branch3 = nn.Sequential(ConvBNReLU(c_in, b3 // 2, 1), ConvBNReLU(b3 // 2, b3, 3))
        self.branch5 = nn.Sequential(ConvBNReLU(c_in, b5 // 2, 1), ConvBNReLU(b5 // 2, b5, 3), ConvBNReLU(b5, b5, 3))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), ConvBNReLU(c_in, pool, 1))
        self.out_channels = b1 + b3 + b5 + pool

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], 1)


class Inception(ImageClassifier):
    """Inception-style (Szegedy et al., 2015) for small images: a 3x3 stem and five Inception blocks
    in three resolutions (28, 14, 7 for a 28x28 input), global pooling, dropout, linear head."""

    cam_layer = "blocks.6"
    min_input_size = 4  # two 2x2 max-pools

    def __init__(self, num_classes: int, dropout: float = 0.3, **norm):
        super().__init__(**norm)
        specs = [(32, 64, 16, 16), (48, 96, 24, 24), "pool", (64, 128, 32, 32), (64, 128, 32, 32), "pool",
                 (96, 192, 48, 48)]
        blocks, c_in = [], 48
        for spec in specs:
            if spec == "pool":
                blocks.append(nn.MaxPool2d(2))
                continue
            blocks.append(InceptionBlock(c_in, *spec))
            c_in = blocks[-1].out_channels
        self.stem = ConvBNReLU(3, 48, 3)
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(self.normalize(x))))


class ConvAutoencoder(ImageClassifier):
    """Convolutional autoencoder whose encoder becomes the classifier.

    ``pretrain`` trains encoder + decoder to reconstruct the training images (no labels), for
    ``pretrain_epochs``; the training engine then fine-tunes the encoder with a linear head.
    The encoder is three conv pairs (32/64/128 channels, stride 2 between them); the decoder mirrors it
    with transposed convolutions."""

    cam_layer = "encoder.2"

    def __init__(self, num_classes: int, widths=(32, 64, 128), pretrain_epochs: int = 5, dropout: float = 0.3, **norm):
        super().__init__(**norm)
        self.pretrain_epochs = pretrain_epochs
        self.min_input_size = 2 ** (len(widths) - 1)  # stride 2 between stages
        stages, c_in = [], 3
        for i, width in enumerate(widths):
            stages.append(nn.Sequential(ConvBNReLU(c_in, width, 3, stride=1 if i == 0 else 2),
                                        ConvBNReLU(width, width, 3)))
            c_in = width
        self.encoder = nn.Sequential(*stages)
        ups = []
        for width in reversed(widths[:-1]):
            ups += [nn.ConvTranspose2d(c_in, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            c_in = width
        self.decoder = nn.Sequential(*ups, nn.Conv2d(c_in, 3, 3, padding=1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(widths[-1], num_classes))

    def reconstruct(self, x):
        """Images in [0, 1] -> reconstructions in [0, 1] of the same size."""
        out = self.decoder(self.encoder(self.normalize(x)))
        return torch.sigmoid(F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
                             if out.shape[-2:] != x.shape[-2:] else out)

    def forward(self, x):
        return self.head(self.encoder(self.normalize(x)))

    def pretrain(self, split, cfg, generator: torch.Generator | None = None) -> list[float]:
        """Reconstruction pre-training on ``split``'s images (labels unused); returns the mean MSE per epoch."""
        from .data import DeviceLoader
        from .training import autocast_context, resolve_amp
        device = split.labels.device
        dtype = resolve_amp(cfg.amp, device)
        loader = DeviceLoader(split, cfg.batch_size, shuffle=True, augment="basic", generator=generator)
        params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        history = []
        self.train()
        for _ in range(self.pretrain_epochs):
            total = torch.zeros((), device=device)
            for images, _ in loader:
                with autocast_context(device, dtype):
                    loss = F.mse_loss(self.reconstruct(images).float(), images)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach()
            history.append(float(total) / len(loader))
        return history


class ResidualSE(nn.Module):
    """Two 3x3 conv-BN layers with squeeze-and-excitation and dropout on a residual path (the seed's
    modification of DeepCMorph's blocks)."""

    def __init__(self, c_in: int, c_out: int, dropout: float = 0.1):
        super().__init__()
        self.body = nn.Sequential(ConvBNReLU(c_in, c_out, 3), ConvBNReLU(c_out, c_out, 3, activation_layer=None),
                                  SqueezeExcite(c_out, max(8, c_out // 16), nn.ReLU), nn.Dropout2d(dropout))
        self.skip = nn.Identity() if c_in == c_out else ConvBNReLU(c_in, c_out, 1, activation_layer=None)

    def forward(self, x):
        return F.relu(self.body(x) + self.skip(x))


class DeepCMorphLite(ImageClassifier):
    """DeepCMorph-inspired (Ignatov et al., 2024): a segmentation module predicts per-pixel maps that
    a classification module reads together with the image, and the two modules' features are fused.

    Here the segmentation module is a small U-Net of residual SE blocks with dropout that outputs
    ``num_maps`` soft maps (softmax over maps per pixel); the classification module is a residual SE
    CNN over [image, maps]; its pooled features are concatenated with the U-Net bottleneck's before the
    linear head. Unlike the original, whose segmentation module is pre-trained to segment and classify
    nuclei on large annotated pathology data and whose classifier is an ImageNet/TCGA-pre-trained
    EfficientNet-B7, this model has no segmentation labels (the maps are learned end-to-end from the
    class label alone), is about a hundred times smaller, and is trained from scratch."""

    cam_layer = "classifier_body.2"
    min_input_size = 4  # two 2x2 max-pools, in the U-Net and in the classifier

    def __init__(self, num_classes: int, num_maps: int = 4, widths=(32, 64, 128), dropout: float = 0.3, **norm):
        super().__init__(**norm)
        w1, w2, w3 = widths
        self.enc1, self.enc2, self.bottleneck = ResidualSE(3, w1), ResidualSE(w1, w2), ResidualSE(w2, w3)
        self.dec2, self.dec1 = ResidualSE(w3 + w2, w2), ResidualSE(w2 + w1, w1)
        self.to_maps = nn.Conv2d(w1, num_maps, 1)
        self.classifier_body = nn.Sequential(ResidualSE(3 + num_maps, w1), nn.MaxPool2d(2), ResidualSE(w1, w2),
                                             nn.MaxPool2d(2), ResidualSE(w2, w3))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * w3, num_classes))

    @staticmethod
    def _up(x, like):
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def segment(self, x):
        """Normalised image -> (soft per-pixel maps, bottleneck features)."""
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottleneck(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self._up(b, e2), e2], 1))
        d1 = self.dec1(torch.cat([self._up(d2, e1), e1], 1))
        return self.to_maps(d1).softmax(1), b

    def forward(self, x):
        x = self.normalize(x)
        maps, bottleneck = self.segment(x)
        features = self.classifier_body(torch.cat([x, maps], 1))
        pooled = torch.cat([features.mean((2, 3)), bottleneck.mean((2, 3))], 1)
        return self.head(pooled)


for _name, _cls in {"vgg": VGG, "inception": Inception, "autoencoder": ConvAutoencoder,
                    "deepcmorph_lite": DeepCMorphLite}.items():
    register_class(_name, _cls)
