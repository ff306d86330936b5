"""Fitting NetVLAD / PCA on images instead of a bag: an image folder, a list, an array or a stream of frames."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vbl_ros.errors import BadFrameError, ConfigError, MissingDataError, ModelError
from vbl_ros.model import DescriptorNet, InputTransform, ModelConfig, initialize_model, read_image_folder
from vbl_ros.model.image_folder import evenly_spaced, list_images, read_image, sample_evenly
from vbl_ros.testing import synthetic_scene

SMALL = {"input_height": 64, "input_width": 64}  # 2 x 2 local features per frame
VLAD_PCA = ModelConfig(
    aggregation="netvlad", netvlad_clusters=4, projection="pca", projection_dim=16, **SMALL
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_folder(folder: Path, count: int, *, seed: int = 0) -> Path:
    """``count`` synthetic scenes, every fifth a JPEG, the others PNG, named in order; plus non-images."""
    folder.mkdir(parents=True)
    for i in range(count):
        bgr = cv2.cvtColor(synthetic_scene(seed + i), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / f"frame_{i:03d}.{'jpg' if i % 5 == 4 else 'png'}"), bgr)
    (folder / "notes.txt").write_text("not an image")
    (folder / "zz_not_an_image.png").write_text("not an image either")
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("images") / "drive", 20)


@pytest.fixture(scope="module")
def from_folder(folder: Path) -> DescriptorNet:
    return initialize_model(VLAD_PCA, images=folder, device="cpu")


def _assert_same_weights(a: DescriptorNet, b: DescriptorNet) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.allclose(sa[key], sb[key], atol=1e-5), key


def test_list_images_sorted_readable_and_evenly_sampled(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        paths = list_images(folder)
    assert [p.name for p in paths] == [f"frame_{i:03d}.{'jpg' if i % 5 == 4 else 'png'}" for i in range(20)]
    assert "1 png/jpg files are not images" in caplog.text
    sampled = list_images(folder, max_images=6)
    assert (
        sampled == [paths[i] for i in evenly_spaced(20, 6)]
        and sampled[0] == paths[0]
        and sampled[-1] == paths[-1]
    )
    image = read_image(paths[0])
    assert image.dtype == np.uint8 and image.shape == (120, 160, 3)
    assert np.array_equal(image, synthetic_scene(0))  # PNG: lossless, RGB order
    assert len(list(read_image_folder(folder, max_images=6))) == 6


def test_a_folder_without_a_readable_image_is_a_named_error(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="not a folder"):
        list_images(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    (empty / "fake.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(MissingDataError, match="no readable png/jpg image"):
        read_image_folder(empty)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    good = cv2.imencode(".png", synthetic_scene(1))[1].tobytes()
    (truncated / "a.png").write_bytes(good[:60])  # a PNG header, no image
    frames = read_image_folder(truncated)  # listed: the header looks like a PNG
    with pytest.raises(MissingDataError, match="no readable image"):
        list(frames)
    with pytest.raises(MissingDataError, match="no readable png/jpg image"):
        initialize_model(VLAD_PCA, images=empty, device="cpu")


def test_sample_evenly_by_index_or_streaming_with_bounded_memory() -> None:
    keep = lambda i, x: x  # noqa: E731
    assert sample_evenly(list(range(100)), 10, keep) == evenly_spaced(100, 10).tolist()
    assert sample_evenly(np.arange(5), 10, keep) == [0, 1, 2, 3, 4]
    assert sample_evenly(iter(range(7)), 10, keep) == list(range(7))
    converted: list[int] = []

    def count(i: int, x: int) -> int:
        converted.append(i)
        return x

    streamed = sample_evenly(iter(range(1000)), 10, count)
    assert len(streamed) == 10 and streamed[0] == 0 and streamed == sorted(streamed)
    gaps = np.diff(streamed)
    assert gaps.min() >= 64 and gaps.max() <= 2 * gaps.min()  # evenly spread over the 1000
    assert len(converted) < 100  # about limit x log2(n / limit) converted, not n; 2 x limit held at most
    with pytest.raises(ConfigError, match="max_images 0"):
        sample_evenly([1, 2], 0, keep)


def test_netvlad_and_pca_fitted_on_a_folder(folder: Path, from_folder: DescriptorNet) -> None:
    assert from_folder.dim == 16
    images = [read_image(p) for p in list_images(folder)]
    transform = InputTransform.from_config(VLAD_PCA)
    x = transform.to_tensor(transform.resize_batch(images))
    with torch.inference_mode():
        features = from_folder.local_features(x)
        projected = from_folder.projection(from_folder.aggregation(features)).numpy()
    # PCA whitened on exactly these 20 frames: zero mean, identity covariance
    assert np.allclose(projected.mean(axis=0), 0.0, atol=1e-3)
    assert np.allclose(np.cov(projected, rowvar=False), np.eye(16), atol=0.02)
    # the centres lie among these frames' local features and each owns some of them
    local = torch.nn.functional.normalize(features.permute(0, 2, 3, 1).reshape(-1, 320), dim=1)
    centres = from_folder.aggregation.centroids.detach()
    assert (centres @ local.T).max(dim=1).values.min() > 0.5
    assert len(set((local @ centres.T).argmax(1).tolist())) == 4


def test_a_folder_a_list_an_array_and_a_stream_give_the_same_model(
    folder: Path, from_folder: DescriptorNet
) -> None:
    images = [read_image(p) for p in list_images(folder)]
    for source in (images, np.stack(images), (image for image in images)):
        _assert_same_weights(initialize_model(VLAD_PCA, images=source, device="cpu"), from_folder)
    # more images than max_images: evenly sampled, the same 17 from the list as from the folder
    _assert_same_weights(
        initialize_model(VLAD_PCA, images=images, max_images=17, device="cpu"),
        initialize_model(VLAD_PCA, images=folder, max_images=17, device="cpu"),
    )


def test_bad_image_sources_are_refused(
    folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConfigError, match="not both"):
        initialize_model(VLAD_PCA, bag=tmp_path / "bag", images=folder)
    with pytest.raises(ConfigError, match="--images FOLDER"):
        initialize_model(VLAD_PCA)
    with pytest.raises(ConfigError, match="camera topic"):
        initialize_model(VLAD_PCA, images=folder, camera_topic="/stereo/left/image_raw")
    few = write_folder(tmp_path / "few", 5)
    with pytest.raises(ModelError, match=r"few: 5 images, at least 17 are needed \(.*PCA to 16 dims"):
        initialize_model(VLAD_PCA, images=few, device="cpu")
    with pytest.raises(BadFrameError, match="image 0: expected uint8"):
        initialize_model(VLAD_PCA, images=[np.zeros((64, 64, 3), np.float32)] * 20, device="cpu")
    with caplog.at_level(logging.INFO, logger="vbl_ros.model.init"):
        initialize_model(ModelConfig(**SMALL), images=folder)
    assert f"needs no data; {folder} is not read" in caplog.text
