"""facebookresearch/mae: the released encoders and the pre-training checkpoints.

``main_pretrain.py`` saves ``{model, optimizer, epoch, scaler, args (argparse.Namespace)}`` whose ``model`` is
``models_mae.MaskedAutoencoderViT``: timm ViT encoder keys (``cls_token``, ``pos_embed``, ``patch_embed``,
``blocks``, ``norm``) plus ``mask_token`` (1, 1, D) and the decoder (``decoder_embed``, ``decoder_pos_embed``,
``decoder_blocks``, ``decoder_norm``, ``decoder_pred``). The released ``mae_pretrain_vit_*.pth`` keep only
``{"model": encoder}``. MAE's position embedding is the fixed 2D sin-cos table of ``util/pos_embed.py`` (zeros for
the cls token), which is how a released encoder is told from another timm ViT in a ``{"model": ...}`` wrapper.
Features: the final-norm cls token, as ``models_vit`` with ``global_pool=False`` (``main_linprobe.py``'s default).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from sslhub.checkpoints.readers.base import Match, Reader, StateDict, is_timm_vit


def mae_sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """MAE's ``get_2d_sincos_pos_embed(dim, grid, cls_token=True)`` as a (1, 1 + grid**2, dim) tensor."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0))
    gw, gh = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="xy")

    def one(pos: torch.Tensor) -> torch.Tensor:
        out = pos.reshape(-1, 1) * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    emb = torch.cat([one(gw), one(gh)], dim=1)  # MAE: emb_h from grid[0] (= w), emb_w from grid[1]
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), emb]).float()[None]


class MAE(Reader):
    name = "mae"
    method = "mae"
    upstream = "facebookresearch/mae"
    evaluation_copy = "encoder; decoder and mask_token dropped"
    drop = ("mask_token", "decoder_")
    signature = ("decoder_embed.weight", "mask_token")

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        if not is_timm_vit(sd, ""):
            return None
        if "decoder_embed.weight" in sd and "mask_token" in sd:
            return Match("", "pre-training checkpoint")
        pos = sd.get("pos_embed")
        if set(extras) or "head.weight" in sd or pos is None or pos.ndim != 3 or "cls_token" not in sd:
            return None  # released encoders are {"model": encoder} and nothing else
        grid = int((pos.shape[1] - 1) ** 0.5)
        if grid * grid == pos.shape[1] - 1 and pos.shape[2] % 4 == 0:
            if torch.allclose(pos.float(), mae_sincos_pos_embed(pos.shape[2], grid), atol=1e-4):
                return Match("", "released encoder", why="'pos_embed' is MAE's fixed 2D sin-cos table")
        return None
