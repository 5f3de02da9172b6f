"""Build real Lightly checkpoints with the ``lightly`` package (test extra), the way Lightly writes them.

Worker/CLI files follow the documented ``build_model`` + ``torch.save({"state_dict": model.state_dict(prefix="model.")})``;
genuine CLI files add Lightning's top-level entries; benchmark files mirror the LightningModule attribute layout of
``benchmarks/imagenet`` (fact sheet section 2).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

lightly = __import__("lightly")
from lightly.cli._cli_simclr import _SimCLR  # noqa: E402
from lightly.models import ResNetGenerator, batchnorm  # noqa: E402


def randomize_bn(module: nn.Module, seed: int = 0) -> None:
    """Give BatchNorm layers non-trivial running stats so that eval-mode features test them."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def worker_model(name: str = "resnet-18", width: float = 1.0, num_ftrs: int = 32, out_dim: int = 128) -> _SimCLR:
    """The Worker/CLI SimCLR model (documented build_model, CLI head with batch_norm=False)."""
    resnet = ResNetGenerator(name=name, width=width)
    last = list(resnet.children())[-1].in_features
    backbone = nn.Sequential(
        batchnorm.get_norm_layer(3, 0),
        *list(resnet.children())[:-1],
        nn.Conv2d(last, num_ftrs, 1),
        nn.AdaptiveAvgPool2d(1),
    )
    model = _SimCLR(backbone, num_ftrs=num_ftrs, out_dim=out_dim)
    randomize_bn(model)
    return model.eval()


def save_worker_ckpt(model: nn.Module, path: Path, *, genuine_cli: bool = False) -> Path:
    if genuine_cli:
        obj = {
            "epoch": 3,
            "global_step": 120,
            "pytorch-lightning_version": "2.6.6",
            "state_dict": model.state_dict(prefix="model."),
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 4}}}},
            "callbacks": {"ModelCheckpoint{'monitor': 'loss', 'mode': 'min'}": {"best_model_score": torch.tensor(1.5)}},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1.0, "params": [0, 1]}]}],
            "lr_schedulers": [],
        }
    else:
        obj = {"state_dict": model.state_dict(prefix="model.")}
    torch.save(obj, path)
    return path


def documented_worker_loader(path: Path, model_name: str, model_width: float) -> nn.Module:
    """The loader from Lightly's docs ("Load Model from Checkpoint"), verbatim in behaviour."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state_dict = OrderedDict()
    for key, value in checkpoint["state_dict"].items():
        if ("projection_head" in key) or ("backbone.7" in key):
            continue
        state_dict[key.replace("model.backbone.", "")] = value
    resnet = lightly.models.ResNetGenerator(name=model_name, width=model_width)
    model = nn.Sequential(
        lightly.models.batchnorm.get_norm_layer(3, 0),
        *list(resnet.children())[:-1],
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
    )
    model.load_state_dict(state_dict)
    return model.eval()


def cli_strict_load(path: Path, name: str, width: float, num_ftrs: int, out_dim: int) -> _SimCLR:
    """Load a .ckpt the way the lightly CLI does (strict ``load_from_state_dict``)."""
    from lightly.cli._helpers import load_from_state_dict

    model = worker_model(name, width, num_ftrs, out_dim)
    sd = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    load_from_state_dict(model, sd, strict=True)
    return model.eval()


def benchmark_resnet_module(method: str = "simclr", arch: str = "resnet18") -> nn.Module:
    """A LightningModule-shaped nn.Module with the attribute layout of Lightly's ImageNet ResNet benchmarks."""
    import torchvision
    from lightly.models.modules import (
        BYOLPredictionHead,
        BYOLProjectionHead,
        DINOProjectionHead,
        MoCoProjectionHead,
        SimCLRProjectionHead,
        SwaVProjectionHead,
        SwaVPrototypes,
    )

    def resnet() -> nn.Module:
        r = getattr(torchvision.models, arch)()
        r.fc = nn.Identity()
        randomize_bn(r, seed=len(arch))
        return r

    m = nn.Module()
    m.backbone = resnet()
    dim = 512 if arch in ("resnet18", "resnet34") else 2048
    if method == "simclr":
        m.projection_head = SimCLRProjectionHead(dim, dim, 128)
    elif method == "moco":
        m.projection_head = MoCoProjectionHead(dim, dim, 128)
        m.key_backbone = resnet()
        m.key_projection_head = MoCoProjectionHead(dim, dim, 128)
    elif method == "byol":
        m.projection_head = BYOLProjectionHead(dim, 64, 32)
        m.prediction_head = BYOLPredictionHead(32, 64, 32)
        m.teacher_backbone = resnet()
        m.teacher_projection_head = BYOLProjectionHead(dim, 64, 32)
    elif method == "dino":  # backbone is the TEACHER here
        m.projection_head = DINOProjectionHead(dim, 64, 32, 128)
        m.student_backbone = resnet()
        m.student_projection_head = DINOProjectionHead(dim, 64, 32, 128)
        m.criterion = nn.Module()
        m.criterion.register_buffer("center", torch.zeros(1, 1, 128))
    elif method == "swav":
        m.projection_head = SwaVProjectionHead(dim, 64, 32)
        m.prototypes = SwaVPrototypes(32, 50)
    m.online_classifier = nn.Module()
    m.online_classifier.classification_head = nn.Linear(dim, 10)
    return m.eval()


def save_benchmark_ckpt(module: nn.Module, path: Path, *, numpy_lr: bool = True) -> Path:
    """Save like PyTorch Lightning does, with the np.float64 learning rate of lightly < 1.5.25 schedulers."""
    lr = np.float64(0.075) if numpy_lr else 0.075
    obj = {
        "epoch": 99,
        "global_step": 500400,
        "pytorch-lightning_version": "2.0.4",
        "state_dict": module.state_dict(),
        "loops": {},
        "callbacks": {},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": lr, "momentum": 0.9, "params": [0]}]}],
        "lr_schedulers": [{"base_lrs": [lr], "last_epoch": 99}],
        "hparams_name": "kwargs",
        "hyper_parameters": {"batch_size_per_device": 128, "num_classes": 1000},
    }
    torch.save(obj, path)
    return path
