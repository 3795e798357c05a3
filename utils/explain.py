"""Grad-CAM explanations through pytorch-grad-cam, used as its authors intend."""
from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.metrics.road import ROADCombined
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

CAM_METHODS = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus}


def compute_cams(model: torch.nn.Module, images: torch.Tensor, classes, method: str = "gradcam",
                 batch_size: int = 64) -> np.ndarray:
    """CAMs (N x H x W, in [0, 1]) for float images in [0, 1] and the class to explain per image,
    on the model's ``cam_target_layer()`` (a layer that keeps a 4x4 map at 28x28)."""
    model.eval()
    out = []
    with CAM_METHODS[method](model=model, target_layers=[model.cam_target_layer()]) as cam:
        for i in range(0, len(images), batch_size):
            batch = images[i:i + batch_size]
            targets = [ClassifierOutputTarget(int(c)) for c in classes[i:i + batch_size]]
            out.append(cam(input_tensor=batch, targets=targets))
    return np.concatenate(out)


def road_scores(model: torch.nn.Module, images: torch.Tensor, cams: np.ndarray, classes,
                percentiles=(20, 40, 60, 80), seed: int = 0) -> np.ndarray:
    """ROAD (Rong et al., 2022) combined score per image: the drop in softmax confidence when the
    least relevant pixels are removed minus the drop when the most relevant are, halved.
    Higher means more faithful. ROAD's imputation adds random noise; it is seeded (without touching
    the caller's random state) so a re-run gives the same scores."""
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in classes]
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        return np.asarray(ROADCombined(percentiles=list(percentiles))(images, cams, targets, model)).reshape(-1)


def overlay(image: torch.Tensor, cam: np.ndarray) -> np.ndarray:
    """RGB uint8 overlay of a CAM on a float image 3 x H x W."""
    return show_cam_on_image(image.permute(1, 2, 0).cpu().numpy().astype(np.float32), cam, use_rgb=True)
