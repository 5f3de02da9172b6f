"""Block masks of the masked-image methods, with Lightly's names and random-number use:

* :func:`random_block_mask` / :func:`random_block_mask_image`: DINOv2/iBOT's rectangles of masked patches
  (Python's ``random``, as Lightly and DINOv2 draw them).
* :func:`random_inverse_block_mask`: CAPI's single visible block, the rest masked (torch's generator).
* :func:`random_grid_token_mask`: Pixio's coarse token mask, whole ``grid_size`` x ``grid_size`` cells of patches
  kept or masked together (torch's generator).
* :func:`ijepa_multiblock_masks`: I-JEPA's context and target blocks, what Lightly's ``IJEPAMaskCollator``
  returns (block sizes from a generator seeded by a step counter, positions from torch's generator).
"""

from __future__ import annotations

import math
import random
from typing import Optional, Union

import torch
from torch import Tensor

__all__ = [
    "ijepa_multiblock_masks",
    "random_block_mask",
    "random_block_mask_image",
    "random_grid_token_mask",
    "random_inverse_block_mask",
]

Device = Optional[Union[torch.device, str]]


def random_block_mask(
    size: tuple[int, int, int],
    batch_mask_ratio: float = 0.5,
    min_image_mask_ratio: float = 0.1,
    max_image_mask_ratio: float = 0.5,
    min_num_masks_per_block: int = 4,
    max_num_masks_per_block: Optional[int] = None,
    min_block_aspect_ratio: float = 0.3,
    max_block_aspect_ratio: Optional[float] = None,
    max_attempts_per_block: int = 10,
    device: Device = None,
) -> Tensor:
    """DINOv2/iBOT block masks (B, H, W), True where masked: ``int(B * batch_mask_ratio)`` images get rectangular
    blocks covering a fraction between ``min_image_mask_ratio`` and ``max_image_mask_ratio`` of their patches
    (spread linearly over the masked images, as DINOv2's collate does), the rest none; images in random order.

    Draws from Python's ``random`` module, as Lightly and DINOv2 do, so seeded masks are identical.
    """
    if max_image_mask_ratio < min_image_mask_ratio:
        raise ValueError("max_image_mask_ratio must be greater or equal to min_image_mask_ratio.")
    B, H, W = size
    num_masked_images = int(B * batch_mask_ratio)
    probs = torch.linspace(min_image_mask_ratio, max_image_mask_ratio, num_masked_images + 1).tolist()
    masks = [
        random_block_mask_image((H, W), int(H * W * random.uniform(lo, hi)), min_num_masks_per_block, max_num_masks_per_block,
                                min_block_aspect_ratio, max_block_aspect_ratio, max_attempts_per_block, device)  # fmt: skip
        for lo, hi in zip(probs[:-1], probs[1:])
    ]
    masks += [torch.zeros((H, W), dtype=torch.bool, device=device) for _ in range(num_masked_images, B)]
    random.shuffle(masks)
    return torch.stack(masks)


def random_block_mask_image(
    size: tuple[int, int],
    num_masks: int,
    min_num_masks_per_block: int = 4,
    max_num_masks_per_block: Optional[int] = None,
    min_block_aspect_ratio: float = 0.3,
    max_block_aspect_ratio: Optional[float] = None,
    max_attempts_per_block: int = 10,
    device: Device = None,
) -> Tensor:
    """One boolean (H, W) mask with about ``num_masks`` masked patches, grown rectangle by rectangle (DINOv2's
    ``MaskingGenerator``); stops early when no block fits in ``max_attempts_per_block`` tries."""
    if max_block_aspect_ratio is None:
        max_block_aspect_ratio = 1 / min_block_aspect_ratio
    if max_num_masks_per_block is None:
        max_num_masks_per_block = num_masks
    if max_num_masks_per_block < min_num_masks_per_block:
        raise ValueError("max_num_masks_per_block must be greater or equal to min_num_masks_per_block.")
    if max_block_aspect_ratio < min_block_aspect_ratio:
        raise ValueError("max_block_aspect_ratio must be greater or equal to min_block_aspect_ratio.")
    log_aspect = (math.log(min_block_aspect_ratio), math.log(max_block_aspect_ratio))
    H, W = size
    mask = torch.zeros((H, W), dtype=torch.bool)  # built on the CPU: many tiny reads, one copy to ``device``
    count = 0
    while count < num_masks:
        max_new = min(num_masks - count, max_num_masks_per_block)
        delta = 0
        for _ in range(max_attempts_per_block):
            area = random.uniform(min_num_masks_per_block, max_new)
            aspect = math.exp(random.uniform(*log_aspect))
            h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if w < W and h < H:
                top, left = random.randint(0, H - h), random.randint(0, W - w)
                new = h * w - int(mask[top : top + h, left : left + w].sum().item())
                if 0 < new <= max_new:
                    mask[top : top + h, left : left + w] = True
                    delta += new
            if delta > 0:
                break
        if delta == 0:
            break
        count += delta
    return mask.to(device)


def _square_grid_side(sequence_length: int, num_prefix_tokens: int) -> int:
    """Side of the square patch grid behind a token sequence of ``num_prefix_tokens`` + patches."""
    num_patches = sequence_length - num_prefix_tokens
    if num_patches <= 0:
        raise ValueError(
            f"sequence_length ({sequence_length}) must be greater than num_prefix_tokens ({num_prefix_tokens})."
        )
    side = int(num_patches**0.5)
    if side * side != num_patches:
        raise ValueError(
            f"Number of patches ({num_patches}) must be a perfect square. Got sequence_length={sequence_length} and "
            f"num_prefix_tokens={num_prefix_tokens}."
        )
    return side


def random_inverse_block_mask(
    size: tuple[int, int],
    mask_ratio: float = 0.65,
    num_prefix_tokens: int = 1,
    min_aspect: float = 0.5,
    max_aspect: Optional[float] = None,
    roll: bool = True,
    device: Device = None,
) -> tuple[Tensor, Tensor]:
    """CAPI's ``(idx_keep, idx_mask)`` token indices: one visible block of ``num_patches - int(num_patches *
    mask_ratio)`` patches (optionally rolled over the grid) is kept, with the prefix tokens first in ``idx_keep``.

    Args:
        size: (batch_size, sequence_length), sequence = prefix tokens + a square grid of patches.
        mask_ratio: Fraction of patches masked.
        num_prefix_tokens: Leading class/register tokens (never masked).
        min_aspect: Smallest aspect ratio of the visible block.
        max_aspect: Largest (default ``1 / min_aspect``).
        roll: Roll the block by a random offset (positional coverage).
        device: Device of the returned indices.
    """
    batch_size, sequence_length = size
    height = width = _square_grid_side(sequence_length, num_prefix_tokens)
    num_patches = height * width
    num_masked = int(num_patches * mask_ratio)
    num_visible = num_patches - num_masked
    log_aspect = (math.log(min_aspect), math.log(max_aspect or 1.0 / min_aspect))
    prefix = torch.arange(num_prefix_tokens)
    keep_rows, mask_rows = [], []
    for _ in range(batch_size):
        visible = torch.zeros(num_patches, dtype=torch.bool)
        if num_visible == num_patches:
            visible.fill_(True)
        elif num_visible > 0:
            lo = max(log_aspect[0], math.log(num_visible / width**2))
            hi = min(log_aspect[1], math.log(height**2 / (num_visible + 1e-5)))
            aspect = math.exp(float(torch.empty(1).uniform_(lo, hi).item()))
            bh = min(height, math.ceil(math.sqrt(num_visible * aspect)))
            bw = min(width, math.ceil(math.sqrt(num_visible / aspect)))
            top = int(torch.randint(0, height - bh + 1, (1,)).item())
            left = int(torch.randint(0, width - bw + 1, (1,)).item())
            grid = torch.zeros(height, width, dtype=torch.bool)
            grid[top : top + bh, left : left + bw] = True
            visible[grid.flatten().nonzero().flatten()[:num_visible]] = True  # exactly num_visible, row-major
            if roll:
                shifts = (int(torch.randint(0, height, (1,)).item()), int(torch.randint(0, width, (1,)).item()))
                visible = torch.roll(visible.reshape(height, width), shifts=shifts, dims=(0, 1)).flatten()
        keep_rows.append(torch.cat([prefix, visible.nonzero().flatten() + num_prefix_tokens]))
        mask_rows.append((~visible).nonzero().flatten() + num_prefix_tokens)
    return torch.stack(keep_rows).to(device), torch.stack(mask_rows).to(device)


def random_grid_token_mask(
    size: tuple[int, int],
    mask_ratio: float = 0.75,
    grid_size: int = 4,
    num_prefix_tokens: int = 1,
    device: Device = None,
) -> tuple[Tensor, Tensor]:
    """Pixio's ``(idx_keep, idx_mask)`` token indices at cell granularity: the square patch grid is cut into
    ``grid_size`` x ``grid_size`` cells, ``int(num_cells * (1 - mask_ratio))`` random cells per image are kept and
    the rest masked, so neighbouring patches cannot leak pixels to each other.

    Args:
        size: (batch_size, sequence_length), sequence = prefix tokens + a square grid of patches.
        mask_ratio: Fraction of cells masked.
        grid_size: Cell side in patches; must divide the grid side.
        num_prefix_tokens: Leading class/register tokens (never masked, first in ``idx_keep``).
        device: Device of the returned indices (and of the random draw, as Lightly).

    Returns:
        ``idx_keep`` (B, num_prefix_tokens + kept_cells * grid_size**2) and ``idx_mask`` (B, masked_cells *
        grid_size**2), token indices (patch index + ``num_prefix_tokens``), cell by cell in random cell order.

    - In Pursuit of Pixel Supervision for Visual Pre-training (Pixio), 2025, https://arxiv.org/abs/2512.15715
    """
    batch_size, sequence_length = size
    side = _square_grid_side(sequence_length, num_prefix_tokens)
    if side % grid_size != 0:
        raise ValueError(f"Patch grid side length ({side}) must be divisible by grid_size ({grid_size}).")
    cells_per_side = side // grid_size
    num_cells = cells_per_side**2
    num_keep = int(num_cells * (1 - mask_ratio))
    # (num_cells, grid_size**2): the token indices each cell covers, cells and their patches in row-major order.
    cells = torch.arange(side * side, device=device) + num_prefix_tokens
    cells = cells.reshape(cells_per_side, grid_size, cells_per_side, grid_size).permute(0, 2, 1, 3)
    cells = cells.reshape(num_cells, grid_size * grid_size)
    order = torch.argsort(torch.rand(batch_size, num_cells, device=device), dim=1)
    prefix = torch.arange(num_prefix_tokens, device=device).expand(batch_size, -1)
    idx_keep = torch.cat([prefix, cells[order[:, :num_keep]].flatten(1)], dim=1)
    return idx_keep, cells[order[:, num_keep:]].flatten(1)


def _block_size(g: torch.Generator, grid: tuple[int, int], scale: tuple[float, float], aspect: tuple[float, float]) -> tuple[int, int]:
    r = torch.rand(1, generator=g).item()
    height, width = grid
    max_keep = int(height * width * (scale[0] + r * (scale[1] - scale[0])))
    ar = aspect[0] + r * (aspect[1] - aspect[0])
    h, w = int(round(math.sqrt(max_keep * ar))), int(round(math.sqrt(max_keep / ar)))
    return min(h, height - 1), min(w, width - 1)


def _block_mask(grid: tuple[int, int], size: tuple[int, int], min_keep: int,
                acceptable: Optional[list[Tensor]] = None) -> tuple[Tensor, Tensor]:  # fmt: skip
    height, width = grid
    h, w = size
    tries, timeout = 0, 20
    while True:
        top = torch.randint(0, height - h, (1,))
        left = torch.randint(0, width - w, (1,))
        mask = torch.zeros((height, width), dtype=torch.int32)
        mask[top : top + h, left : left + w] = 1
        if acceptable is not None:  # drop the regions of the target blocks; relax one more after 20 failures
            for region in acceptable[: max(len(acceptable) - tries, 0)]:
                mask *= region
        idx = torch.nonzero(mask.flatten())
        if len(idx) > min_keep:
            break
        timeout -= 1
        if timeout == 0:
            tries, timeout = tries + 1, 20
    complement = torch.ones((height, width), dtype=torch.int32)
    complement[top : top + h, left : left + w] = 0
    return idx.squeeze(), complement


def ijepa_multiblock_masks(
    batch_size: int,
    grid: tuple[int, int],
    seed: int,
    enc_mask_scale: tuple[float, float] = (0.2, 0.8),
    pred_mask_scale: tuple[float, float] = (0.2, 0.8),
    aspect_ratio: tuple[float, float] = (0.3, 3.0),
    nenc: int = 1,
    npred: int = 2,
    min_keep: int = 4,
    allow_overlap: bool = False,
) -> tuple[list[Tensor], list[Tensor]]:
    """I-JEPA's context (``masks_enc``, ``nenc`` tensors) and target (``masks_pred``, ``npred`` tensors) patch
    indices, each (batch_size, K), K trimmed to the smallest block of the batch.

    Sizes come from a generator seeded with ``seed`` (Lightly's collator uses its call counter); positions from
    torch's global generator. Context blocks avoid the targets unless ``allow_overlap``.
    """
    g = torch.Generator()
    g.manual_seed(seed)
    p_size = _block_size(g, grid, pred_mask_scale, aspect_ratio)
    e_size = _block_size(g, grid, enc_mask_scale, (1.0, 1.0))
    for what, (h, w) in (("target", p_size), ("context", e_size)):
        if h * w <= min_keep:  # no block could ever be kept: Lightly's collator would loop forever
            raise ValueError(
                f"I-JEPA {what} blocks of {h}x{w} patches on a {grid[0]}x{grid[1]} grid cannot keep more than "
                f"min_keep={min_keep} patches; lower min_keep or use more patches per image"
            )
    pred, enc = [], []
    min_pred = min_enc = grid[0] * grid[1]
    for _ in range(batch_size):
        masks_p, complements = [], []
        for _ in range(npred):
            m, c = _block_mask(grid, p_size, min_keep)
            masks_p.append(m)
            complements.append(c)
            min_pred = min(min_pred, len(m))
        pred.append(masks_p)
        masks_e = []
        for _ in range(nenc):
            m, _ = _block_mask(grid, e_size, min_keep, None if allow_overlap else complements)
            masks_e.append(m)
            min_enc = min(min_enc, len(m))
        enc.append(masks_e)
    masks_enc = [torch.stack([row[i][:min_enc] for row in enc]) for i in range(nenc)]
    masks_pred = [torch.stack([row[i][:min_pred] for row in pred]) for i in range(npred)]
    return masks_enc, masks_pred
