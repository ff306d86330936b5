"""The losses: the seed's triplet loss on unit-L2 descriptors, and the L1 loss over pixels with a LIDAR return.

Triplet loss, exactly as the seed method states it, per query ``q`` with positive ``p`` and each of
its negatives ``n``::

    max(0, margin + ||F(q) - F(p)|| - ||F(q) - F(n)||)

on L2-normalised descriptors, with Euclidean distances (not squared), averaged over the negatives
of the query. The side-modality loss is ``mean |prediction - target|`` over the pixels that have a
return (target > 0). Both return sums, so that a batch split across processes is normalised by
the global count, exactly as one process would.
"""

from __future__ import annotations

import torch

__all__ = ["distance", "masked_l1_sum", "triplet_losses"]


def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Euclidean distance ``||a - b||`` of ``(M, D)`` tensors (not squared).

    The squared distance is clamped at 1e-12 before the square root, so the gradient of identical
    rows is 0 instead of NaN; any other distance is exact.
    """
    return (a - b).pow(2).sum(dim=-1).clamp_min(1e-12).sqrt()


def triplet_losses(
    descriptors: torch.Tensor,
    query: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    pair_tuple: torch.Tensor,
    margin: float,
) -> torch.Tensor:
    """Per-tuple triplet losses ``(T,)``: each tuple's hinge averaged over its negatives.

    Args:
        descriptors: ``(B, D)`` unit-L2 descriptors of the batch's images.
        query, positive: ``(T,)`` rows of each tuple's query and positive.
        negative: ``(M,)`` rows of the negatives, all tuples together.
        pair_tuple: ``(M,)`` the tuple (``0 .. T-1``) each negative belongs to; every tuple has one.
        margin: the margin.
    """
    num_tuples = len(query)
    d_pos = distance(descriptors[query], descriptors[positive])
    d_neg = distance(descriptors[query[pair_tuple]], descriptors[negative])
    hinge = torch.relu(margin + d_pos[pair_tuple] - d_neg)
    sums = torch.zeros(num_tuples, dtype=hinge.dtype, device=hinge.device).index_add(0, pair_tuple, hinge)
    counts = torch.bincount(pair_tuple, minlength=num_tuples).to(hinge.dtype)
    return sums / counts


def masked_l1_sum(prediction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(sum over pixels with a return of |prediction - target|, their number)``.

    Args:
        prediction, target: ``(B, 1, H, W)``; target 0 = no LIDAR return.
    """
    mask = target > 0
    return (prediction - target).abs()[mask].sum(), int(mask.sum())
