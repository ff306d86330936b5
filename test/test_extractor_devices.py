"""The extractor's devices: CUDA (fp16, channels-last) agrees with the CPU path; CUDA refused when absent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from vbl_ros.errors import ConfigError
from vbl_ros.model import DescriptorExtractor, default_model

HAS_CUDA = torch.cuda.is_available()


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA GPU; the refusal only applies without one")
def test_cuda_requested_without_a_gpu_is_refused_clearly() -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        DescriptorExtractor(default_model(), "cuda")


@pytest.mark.skipif(
    not HAS_CUDA, reason="no CUDA GPU on this machine (CI has none); runs on a robot or GPU host"
)
def test_cuda_half_precision_matches_the_cpu_path() -> None:
    images = [data.chelsea(), data.coffee(), data.astronaut()]
    cpu = DescriptorExtractor(default_model(), "cpu")(images)
    gpu_extractor = DescriptorExtractor(default_model(), "cuda")
    assert gpu_extractor.device.type == "cuda"
    gpu = gpu_extractor(images)
    assert gpu.dtype == np.float32 and np.allclose(np.linalg.norm(gpu, axis=1), 1.0, atol=1e-3)
    cosine = (cpu * gpu).sum(axis=1)
    assert cosine.min() > 0.995, f"fp16 CUDA descriptors drift from the CPU ones: {cosine}"


def test_auto_picks_the_available_device() -> None:
    extractor = DescriptorExtractor(default_model(), "auto")
    assert extractor.device.type == ("cuda" if HAS_CUDA else "cpu")
