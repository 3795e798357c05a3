"""What produced a notebook's outputs: printed by every notebook's first code cell."""
from __future__ import annotations

import platform

import torch

from .data import DEFAULT_DATA_ROOT, find_bloodmnist, find_pcam, md5sum
from .experiment import device_name, git_commit
from .profiles import Profile, as_profile, default_device


def describe_environment(profile: Profile | str, data_root=DEFAULT_DATA_ROOT, dataset: str = "bloodmnist",
                         committed: str | None = None) -> dict:
    """Print and return what produces the notebook's outputs; ``committed``: the profile the notebook's outputs are
    committed in, named on the first line so a reader sees whether this run reproduces them."""
    import medmnist
    import pytorch_grad_cam  # noqa: F401
    import sklearn
    import torchvision
    from importlib.metadata import version
    # Full PCam h5 files are several GB: their MD5 is not recomputed here (load_pcam checks their sizes).
    path = find_bloodmnist(data_root) if dataset == "bloodmnist" else find_pcam(data_root)[1]
    profile = as_profile(profile)
    info = {
        "profile": profile.name + ("" if committed is None else
                                   " (the profile this notebook is committed in)" if profile.name == committed else
                                   f" (set by PROFILE; committed in {committed}, so its figures go to "
                                   f"{profile.figures or 'build/smoke/figures'}/)"), "device": device_name(default_device()), "git_commit": git_commit(),
        "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
        "medmnist": medmnist.__version__, "scikit-learn": sklearn.__version__, "grad-cam": version("grad-cam"),
        "data": str(path.name), "data_md5": md5sum(path) if path.is_file() else "(full release, size-checked)",
    }
    for k, v in info.items():
        print(f"{k:>13}: {v}")
    return info
