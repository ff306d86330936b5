"""``vbl export --format onnx``: parity with PyTorch per architecture and runtime, metadata, atomic writes, errors."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import onnx
import pytest
from export_fixtures import Exported, small_exports, street_frames

from vbl_ros.cli import main
from vbl_ros.errors import ModelError, OutputExistsError
from vbl_ros.export import build_extractor, export_model, read_metadata
from vbl_ros.export.files import write_atomically
from vbl_ros.export.onnx import PARITY_COSINE
from vbl_ros.model import DescriptorExtractor

ARCHS = ("gem", "netvlad_pca", "hallucination")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exported]:
    return small_exports(tmp_path_factory)


def top5(map_descriptors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    index = faiss.IndexFlatIP(map_descriptors.shape[1])
    index.add(map_descriptors)
    return index.search(queries, 5)[1]


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("arch", ARCHS)
def test_exported_descriptors_and_ranking_match_pytorch(exports, arch: str, runtime: str) -> None:
    e = exports[arch]
    keyframes = street_frames(30)
    queries = street_frames(30, offset_px=3)  # a little further along: the nearest keyframe is the same index
    reference = DescriptorExtractor(e.net, "cpu", batch_size=8)
    exported = build_extractor(e.onnx, runtime=runtime, device="cpu", threads=1, batch_size=8)
    assert exported.runtime == runtime and exported.fingerprint == e.fingerprint
    ref_map, ref_q = reference(keyframes), reference(queries)
    exp_map, exp_q = exported(keyframes), exported(queries)
    assert exp_map.shape == ref_map.shape == (30, e.net.dim) and exp_map.dtype == np.float32
    cosine = np.concatenate([(ref_map * exp_map).sum(1), (ref_q * exp_q).sum(1)])
    assert cosine.min() >= PARITY_COSINE, cosine.min()
    assert np.array_equal(top5(ref_map, ref_q), top5(exp_map, exp_q))
    # one image at a time (the node) gives the batch's descriptors
    assert np.allclose(exported([queries[4]])[0], exp_q[4], atol=1e-5)


def test_metadata_and_interface_of_the_onnx_file(exports) -> None:
    e = exports["netvlad_pca"]
    metadata = read_metadata(e.onnx)
    assert metadata.fingerprint == e.fingerprint
    assert metadata.config["aggregation"] == "netvlad" and metadata.config["projection_dim"] == 32
    assert (metadata.dim, metadata.height, metadata.width) == (32, 64, 64)
    assert (metadata.file_format, metadata.precision, metadata.layout) == ("onnx", "fp32", "NHWC")
    proto = onnx.load(str(e.onnx))
    assert {p.key for p in proto.metadata_props} >= {"vbl.fingerprint", "vbl.config", "vbl.format"}
    (image,) = proto.graph.input
    assert image.name == "images" and image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = image.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [64, 64, 3]
    (out,) = proto.graph.output
    assert out.name == "descriptors" and out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_an_existing_file_is_never_replaced_silently(exports, tmp_path: Path) -> None:
    e = exports["gem"]
    target = tmp_path / "model.onnx"
    target.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_model(e.model, target)
    assert main(["export", str(e.model), "--out", str(target)]) == 2
    assert target.read_bytes() == b"keep me"


def test_an_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half a model")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(tmp_path / "model.onnx", fail)
    assert list(tmp_path.iterdir()) == []


def test_what_cannot_be_exported_or_read_is_named(exports, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="already an exported network"):
        export_model(exports["gem"].onnx, tmp_path / "again.onnx")
    with pytest.raises(ModelError, match="not found"):
        export_model(tmp_path / "missing.pt", tmp_path / "x.onnx")
    assert main(["export", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.onnx")]) == 2
    with pytest.raises(ModelError, match="a vbl model file, not an exported network"):
        read_metadata(exports["gem"].model)
    plain = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["x"], ["y"])],
            "plain",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        )
    )
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    with pytest.raises(ModelError, match="not a network exported by vbl"):
        build_extractor(tmp_path / "plain.onnx", runtime="onnxruntime", device="cpu")
    (tmp_path / "garbage.onnx").write_bytes(b"\x08\x07 not protobuf \xff\xff")
    with pytest.raises(ModelError, match="not a readable ONNX file"):
        read_metadata(tmp_path / "garbage.onnx")
