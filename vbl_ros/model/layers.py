"""Aggregation layers of :class:`~vbl_ros.model.net.DescriptorNet`: GeM, NetVLAD, L2Norm, Projection.

Each layer maps a backbone feature map ``(B, C, H, W)`` (or a descriptor ``(B, D)``) to a
descriptor; :class:`L2Norm` makes descriptors unit length so that inner product = cosine similarity.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GeM", "L2Norm", "NetVLAD", "Projection", "kmeans"]

logger = logging.getLogger(__name__)


class L2Norm(nn.Module):
    """Normalise the last dimension to unit L2 length: ``(B, D) -> (B, D)``."""

    def __init__(self, dim: int = -1, eps: float = 1e-12) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, p=2.0, dim=self.dim, eps=self.eps)


class GeM(nn.Module):
    """Generalised-mean pooling (Radenović et al., 2018): ``(B, C, H, W) -> (B, C)``.

    ``out_c = (mean_hw max(x, eps)^p)^(1/p)``; ``p = 1`` is average pooling, ``p -> inf`` max pooling.
    The clamp at ``eps`` also acts as a ReLU on backbones whose last layer is linear.

    Args:
        p: initial exponent (learned when ``learn_p``).
        eps: lower clamp of the features.
        learn_p: whether ``p`` is a trainable parameter.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learn_p: bool = True) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.full((1,), float(p)), requires_grad=learn_p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.to(x.dtype)
        pooled = F.adaptive_avg_pool2d(x.clamp(min=self.eps).pow(p), 1)
        return pooled.pow(1.0 / p).flatten(1)

    def extra_repr(self) -> str:
        return f"p={float(self.p.detach()[0]):.3f}, eps={self.eps}"


class NetVLAD(nn.Module):
    """NetVLAD aggregation (Arandjelović et al., 2016): ``(B, C, H, W) -> (B, K * C)``.

    Soft-assigns each local feature (L2-normalised over channels) to ``K`` cluster centres and sums
    the residuals; each cluster's residual is intra-normalised, then the whole vector L2-normalised.
    Initialise the centres with :meth:`init_from_features` (k-means on backbone features).

    Args:
        num_clusters: ``K``.
        dim: ``C``, the backbone's channel count.
    """

    def __init__(self, num_clusters: int = 64, dim: int = 320) -> None:
        super().__init__()
        self.num_clusters = num_clusters
        self.dim = dim
        self.conv = nn.Conv2d(dim, num_clusters, kernel_size=1, bias=True)
        self.centroids = nn.Parameter(torch.randn(num_clusters, dim) * 0.1)

    @property
    def out_dim(self) -> int:
        return self.num_clusters * self.dim

    @torch.no_grad()
    def init_from_features(self, features: torch.Tensor | np.ndarray, *, seed: int = 0) -> None:
        """Set centres by k-means on local features and the assignment conv to match.

        The soft assignment's sharpness ``alpha`` is chosen so that a feature's weight on its
        second-nearest centre is on average 1 % of that on its nearest (as the reference code).

        Args:
            features: ``(N, C)`` local descriptors (rows of backbone feature maps), ``N >= K``.
            seed: k-means seed.
        """
        feats = torch.as_tensor(np.asarray(features, dtype=np.float32))
        if feats.ndim != 2 or feats.shape[1] != self.dim or feats.shape[0] < self.num_clusters:
            raise ValueError(
                f"NetVLAD init needs (N >= {self.num_clusters}, {self.dim}) features, "
                f"got {tuple(feats.shape)}"
            )
        feats = F.normalize(feats, dim=1)
        centres = torch.from_numpy(kmeans(feats.numpy(), self.num_clusters, seed=seed))
        centres = F.normalize(centres, dim=1)
        # Dot products of normalised features with normalised centres, as in the reference code.
        dots = feats @ centres.T
        dots_sorted = dots.sort(dim=1, descending=True).values
        margin = (dots_sorted[:, 0] - dots_sorted[:, 1]).mean().clamp(min=1e-6)
        alpha = float(-np.log(0.01) / margin)
        self.centroids.copy_(centres)
        self.conv.weight.copy_((2.0 * alpha * centres)[:, :, None, None])
        self.conv.bias.copy_(-alpha * centres.norm(dim=1))
        logger.info(
            "NetVLAD: %d centres from %d local features, alpha %.1f", self.num_clusters, len(feats), alpha
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        x = F.normalize(x, p=2.0, dim=1)
        soft_assign = F.softmax(self.conv(x).flatten(2), dim=1)  # (B, K, HW)
        x_flat = x.flatten(2)  # (B, C, HW)
        # sum_i a_ki (x_i - c_k) = (A X^T)_k - (sum_i a_ki) c_k
        vlad = torch.bmm(soft_assign, x_flat.transpose(1, 2))  # (B, K, C)
        vlad = vlad - soft_assign.sum(dim=2, keepdim=True) * self.centroids.to(x.dtype)[None]
        vlad = F.normalize(vlad, p=2.0, dim=2)
        return F.normalize(vlad.reshape(b, -1), p=2.0, dim=1)

    def extra_repr(self) -> str:
        return f"num_clusters={self.num_clusters}, dim={self.dim}"


class Projection(nn.Module):
    """Linear projection ``(B, D_in) -> (B, D_out)``, learned or PCA-whitened.

    ``x -> W (x - mean)``; :meth:`fit_pca` sets ``W`` and ``mean`` from data (with whitening:
    rows scaled by ``1 / sqrt(eigenvalue)``), otherwise they are trained.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        if out_dim > in_dim:
            raise ValueError(f"projection to {out_dim} dims from {in_dim}: cannot increase the dimension")
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.linear = nn.Linear(in_dim, out_dim, bias=False)
        self.register_buffer("mean", torch.zeros(in_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x - self.mean.to(x.dtype))

    @torch.no_grad()
    def fit_pca(
        self, descriptors: torch.Tensor | np.ndarray, *, whiten: bool = True, eps: float = 1e-6
    ) -> None:
        """Fit PCA (optionally whitening) on ``(N, D_in)`` descriptors, ``N > D_out``."""
        x = np.asarray(descriptors, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.in_dim or x.shape[0] <= self.out_dim:
            raise ValueError(
                f"PCA needs (N > {self.out_dim}, {self.in_dim}) descriptors, got {tuple(x.shape)}"
            )
        mean = x.mean(axis=0)
        if x.shape[0] > self.in_dim:
            eigval, eigvec = np.linalg.eigh(np.cov(x - mean, rowvar=False))
            order = np.argsort(eigval)[::-1][: self.out_dim]
            eigval, w = eigval[order], eigvec[:, order].T
        else:  # fewer samples than dimensions (NetVLAD's K * C): thin SVD, no D x D covariance
            _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
            eigval, w = s[: self.out_dim] ** 2 / (x.shape[0] - 1), vt[: self.out_dim]
        if whiten:
            w = w / np.sqrt(eigval + eps)[:, None]
        self.linear.weight.copy_(torch.from_numpy(w.astype(np.float32)))
        self.mean.copy_(torch.from_numpy(mean.astype(np.float32)))


def kmeans(x: np.ndarray, k: int, *, iterations: int = 25, seed: int = 0) -> np.ndarray:
    """k-means centres ``(k, D)`` of ``x`` ``(N, D)`` with FAISS (a dependency of vbl)."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=seed, verbose=False)
    km.train(x)
    return np.asarray(km.centroids, dtype=np.float32)
