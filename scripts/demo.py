"""The main job on the embedded default data: a Lightly-Worker-style checkpoint -> safetensors -> features.

Until the trainer lands, the checkpoint is a freshly initialised Worker SimCLR model (the exact layout the
Lightly Worker writes); the demo converts it, reloads it without flags, checks the features are unchanged and
embeds the embedded clothing images.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sslhub  # noqa: E402
from sslhub.backbones import create_backbone  # noqa: E402

DATA = ROOT / "training/data/clothing10_mini"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.time()
    out = Path(tempfile.mkdtemp(prefix="sslhub-demo-"))
    torch.manual_seed(0)
    backbone = create_backbone("resnet-18", width=0.25, num_ftrs=32)
    sd = {f"model.backbone.{k}": v for k, v in backbone.state_dict().items()}
    sd.update({"model.projection_head.layers.0.weight": torch.randn(32, 32), "model.projection_head.layers.0.bias": torch.zeros(32),
               "model.projection_head.layers.2.weight": torch.randn(128, 32), "model.projection_head.layers.2.bias": torch.zeros(128)})  # fmt: skip
    torch.save({"state_dict": sd}, out / "checkpoint.ckpt")
    st = sslhub.convert(out / "checkpoint.ckpt", out / "model.safetensors")
    a, b = sslhub.load_pretrained(out / "checkpoint.ckpt"), sslhub.load_pretrained(st)
    from PIL import Image

    files = sorted(DATA.glob("val/*/*.jpg"))
    x = torch.stack([torch.from_numpy(__import__("numpy").asarray(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files]).float() / 255
    mean, std = torch.tensor(a.pretrained_cfg["mean"]).view(1, 3, 1, 1), torch.tensor(a.pretrained_cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        fa, fb = a((x - mean) / std), b((x - mean) / std)
    info = sslhub.info(st)
    print(f"checkpoint: {info['layout']} {info['arch']} width={info['width']} num_ftrs={info['num_ftrs']} out_dim={info['out_dim']}")
    print(f"embedded {len(files)} images from {DATA.relative_to(ROOT)} -> features {tuple(fa.shape)}")
    print(f"ckpt vs safetensors max |diff| = {(fa - fb).abs().max().item():.2e}")
    print(f"done in {time.time() - t0:.1f} s; files in {out}")


if __name__ == "__main__":
    main()
