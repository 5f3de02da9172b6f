"""Memory banks (queues of past embeddings) for MoCo-style losses and NNCLR."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sslhub.losses import dist


class MemoryBankModule(nn.Module):
    """FIFO queue of embeddings, a drop-in for Lightly's ``MemoryBankModule``.

    The buffers are non-persistent (as in Lightly), so they never appear in state dicts and
    checkpoints stay interchangeable.

    Args:
        size: ``(num_features, dim)`` or ``0`` to disable the bank.
        gather_distributed: Gather embeddings from all processes before enqueueing them.
        feature_dim_first: Return the bank as ``(dim, num_features)`` (Lightly's default) instead of
            ``(num_features, dim)``.
    """

    bank: Tensor
    bank_ptr: Tensor

    def __init__(
        self,
        size: int | Sequence[int],
        gather_distributed: bool = False,
        feature_dim_first: bool = True,
    ) -> None:
        super().__init__()
        size_tuple = (size,) if isinstance(size, int) else tuple(size)
        if any(x < 0 for x in size_tuple):
            raise ValueError(f"Illegal memory bank size {size}, all entries must be non-negative.")
        if isinstance(size, int) and size > 0:
            raise ValueError(
                f"Memory bank size 'size={size}' does not specify the feature dimension. Set it with "
                f"'size=({size}, dim)', or pass 'size=0' to disable the memory bank."
            )
        if size_tuple != (0,) and len(size_tuple) != 2:
            raise ValueError(
                f"Illegal memory bank size {size}, expected a (num_features, dim) tuple, or 'size=0' "
                "to disable the memory bank."
            )
        self.size = size_tuple
        self.gather_distributed = gather_distributed
        self.feature_dim_first = feature_dim_first
        self.register_buffer("bank", torch.empty(size_tuple, dtype=torch.float), persistent=False)
        self.register_buffer("bank_ptr", torch.zeros(1, dtype=torch.long), persistent=False)
        if len(size_tuple) > 1:
            # Random unit vectors, drawn exactly as Lightly does so seeded runs match.
            with torch.no_grad():
                self.bank = nn.functional.normalize(torch.randn(size_tuple), dim=-1)

    def forward(
        self, output: Tensor, labels: Tensor | None = None, update: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Returns ``(output, bank)``; ``bank`` is None when disabled. ``labels`` is ignored.

        The returned bank is a detached copy taken *before* ``output`` is enqueued (if ``update``).
        """
        if self.size[0] == 0:
            return output, None
        bank = self.bank.clone().detach()
        if self.feature_dim_first:
            bank = bank.transpose(0, -1)
        if update:
            self._dequeue_and_enqueue(output)
        return output, bank

    @torch.no_grad()
    def _dequeue_and_enqueue(self, batch: Tensor) -> None:
        if self.gather_distributed:
            batch = dist.concat_all_gather(batch)
        n, ptr, cap = batch.shape[0], int(self.bank_ptr), self.size[0]
        if ptr + n >= cap:
            # Fill up to the end and wrap around; the remainder of this batch is dropped (as Lightly).
            self.bank[ptr:] = batch[: cap - ptr].detach()
            self.bank_ptr.zero_()
        else:
            self.bank[ptr : ptr + n] = batch.detach()
            self.bank_ptr[0] = ptr + n


class NNMemoryBankModule(MemoryBankModule):
    """Memory bank that replaces each input by its nearest neighbour in the bank (NNCLR).

    Args:
        size: ``(num_features, dim)``.
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        super().__init__(size)

    def forward(self, output: Tensor, update: bool = False) -> Tensor:  # type: ignore[override]
        """Returns the nearest neighbour (cosine similarity) of every row of ``output``."""
        output, bank = super().forward(output, update=update)
        assert bank is not None, "NNMemoryBankModule needs a non-zero size"
        bank = bank.to(output.device).t()
        sim = nn.functional.normalize(output, dim=1) @ nn.functional.normalize(bank, dim=1).t()
        return bank.index_select(0, sim.argmax(dim=1))
