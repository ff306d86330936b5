"""Image -> network input (vbl_ros.model.transforms): the extractor's input and descriptors as before the move."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from vbl_ros.errors import BadFrameError, ConfigError
from vbl_ros.model import (
    DescriptorExtractor,
    DescriptorNet,
    InputTransform,
    ModelConfig,
    Normalize,
    default_model,
)
from vbl_ros.model.transforms import IMAGENET_MEAN, IMAGENET_STD, check_image, resize

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _old_preprocess(images: Sequence[np.ndarray], w: int, h: int) -> np.ndarray:
    """``DescriptorExtractor.preprocess`` as it was before transforms.py (commit f5f49bb), checks left out."""
    batch = np.empty((len(images), h, w, 3), np.uint8)
    for i, image in enumerate(images):
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.shape[:2] == (h, w):
            batch[i] = image
        else:
            shrinking = image.shape[0] > h or image.shape[1] > w
            batch[i] = cv2.resize(
                image, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
            )
    return batch


def _old_to_input(batch: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``DescriptorExtractor.to_input`` (CPU, float32) as it was before transforms.py, verbatim."""
    mean_t = torch.tensor(mean, dtype=torch.float32)
    std_t = torch.tensor(std, dtype=torch.float32)
    scale = (1.0 / (255.0 * std_t)).view(1, 3, 1, 1)
    offset = (mean_t / std_t).view(1, 3, 1, 1)
    x = torch.from_numpy(batch).permute(0, 3, 1, 2)
    x = x.to(scale.dtype).mul_(scale).sub_(offset)
    return x.contiguous(memory_format=torch.channels_last)


def _images() -> list[np.ndarray]:
    """Shrunk (both sides, one side), grown, at size, grey, non-contiguous."""
    cat = data.chelsea()  # 300 x 451
    return [cat, cat[:100, :300], data.astronaut()[:90, :120], cat[:224, :224], data.camera(), cat[::2, ::3]]


def test_the_extractor_gives_the_inputs_and_descriptors_of_the_old_formula() -> None:
    net = default_model()
    extractor = DescriptorExtractor(net, "cpu")
    images = _images()
    batch = extractor.transform.resize_batch(images)
    old_batch = _old_preprocess(images, 224, 224)
    assert np.array_equal(batch, old_batch)
    new_input, old_input = extractor.to_input(batch), _old_to_input(old_batch, IMAGENET_MEAN, IMAGENET_STD)
    assert torch.equal(new_input, old_input)
    assert new_input.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        old = extractor.net(old_input).numpy()
    assert np.array_equal(extractor(images), old)


def test_resize_interpolation_and_frame_checks() -> None:
    image = data.astronaut()  # 512 x 512
    assert np.array_equal(resize(image, 100, 80), cv2.resize(image, (80, 100), interpolation=cv2.INTER_AREA))
    small = image[:50, :60]
    assert np.array_equal(
        resize(small, 100, 80), cv2.resize(small, (80, 100), interpolation=cv2.INTER_LINEAR)
    )
    wide = image[:50, :300]  # one side shrinks: INTER_AREA
    assert np.array_equal(resize(wide, 100, 80), cv2.resize(wide, (80, 100), interpolation=cv2.INTER_AREA))
    assert resize(small, 50, 60) is small
    grey = check_image(data.camera())
    assert grey.shape == (512, 512, 3) and np.array_equal(grey[..., 1], data.camera())
    for bad, message in (
        (np.zeros((4, 4, 3), np.float32), "image 3: expected uint8"),
        (np.zeros((4, 4, 4), np.uint8), r"image 3: expected shape \(H, W, 3\)"),
        (np.zeros((0, 4, 3), np.uint8), "expected shape"),
        (np.zeros(5, np.uint8), "expected shape"),
    ):
        with pytest.raises(BadFrameError, match=message):
            check_image(bad, 3)


def test_normalize_takes_uint8_or_float_and_gives_the_imagenet_normalisation() -> None:
    rng = np.random.default_rng(0)
    pixels = torch.from_numpy(rng.integers(0, 256, (2, 3, 5, 7), dtype=np.uint8))
    norm = Normalize(IMAGENET_MEAN, IMAGENET_STD)
    out = norm(pixels)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 5, 7)
    assert torch.equal(norm(pixels.float()), out)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(out, (pixels / 255.0 - mean) / std, atol=1e-6)
    assert norm.to(torch.float16)(pixels).dtype == torch.float16
    assert not norm.state_dict()  # constants of a graph, not weights


def test_normalize_inside_an_exported_graph_gives_the_extractors_descriptors() -> None:
    config = ModelConfig(input_height=64, input_width=96)
    torch.manual_seed(0)
    net = DescriptorNet(config, pretrained=False).eval()
    transform = InputTransform.from_config(config)
    graph = torch.nn.Sequential(transform.normalize(), net).eval()
    images = [data.chelsea(), data.coffee()]
    batch = torch.from_numpy(transform.resize_batch(images)).permute(0, 3, 1, 2).contiguous()
    exported = torch.export.export(graph, (batch,)).module()
    with torch.inference_mode():
        descriptors = exported(batch).numpy()
    assert np.allclose(descriptors, DescriptorExtractor(net, "cpu")(images), atol=1e-5)


def test_to_tensor_for_training_datasets() -> None:
    transform = InputTransform(32, 48, IMAGENET_MEAN, IMAGENET_STD)
    images = transform.resize_batch([data.chelsea(), data.coffee(), data.camera()])
    assert images.shape == (3, 32, 48, 3)
    batch = transform.to_tensor(images)
    assert batch.shape == (3, 3, 32, 48) and batch.dtype == torch.float32 and batch.is_contiguous()
    expected = transform.normalize()(torch.from_numpy(images).permute(0, 3, 1, 2))
    assert torch.equal(batch, expected)
    single = transform.to_tensor(images[1])
    assert single.shape == (3, 32, 48) and torch.equal(single, batch[1])
    with pytest.raises(BadFrameError, match="resize them first"):
        transform.to_tensor(data.chelsea())
    with pytest.raises(BadFrameError, match="uint8"):
        transform.to_tensor(images.astype(np.float32))


def test_input_transform_from_config_and_validation() -> None:
    config = ModelConfig(input_height=96, input_width=128, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    transform = InputTransform.from_config(config)
    assert transform == InputTransform(96, 128, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert hash(transform) == hash(InputTransform.from_config(config))  # usable as a cache key
    assert transform.resize(data.chelsea()).shape == (96, 128, 3)
    with pytest.raises(ConfigError, match="std > 0"):
        InputTransform(96, 128, (0.5, 0.5, 0.5), (0.25, 0.0, 0.25))
    with pytest.raises(ConfigError, match="input size"):
        InputTransform(0, 128, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
