"""Descriptor network: image transforms, backbones, aggregation layers, model files and the extractor.

``InputTransform`` / ``Normalize`` turn RGB uint8 images into the network input (one place, shared
by the extractor, the initialisation, and next training and export); ``DescriptorNet`` = truncated
CNN backbone + GeM or NetVLAD (+ projection) + L2 norm, which can also return its feature map and
freeze its first backbone stages; ``HallucinationNet`` adds a decoder that predicts depth from the
image and a depth encoder (one fused descriptor, RGB alone at inference; ``build_net`` builds either
from its config); ``DescriptorExtractor`` turns RGB images into unit-L2 float32
descriptors; ``initialize_model`` fits NetVLAD's centres and a PCA projection on a bag or on images
(no training).
"""

from vbl_ros.model.extractor import DescriptorExtractor, resolve_device
from vbl_ros.model.hallucination import HallucinationNet
from vbl_ros.model.heads import SideBranchConfig
from vbl_ros.model.image_folder import read_image_folder
from vbl_ros.model.init import init_model, initialize_model
from vbl_ros.model.io import build_net, default_model, load_model, model_fingerprint, save_model
from vbl_ros.model.net import DescriptorNet, ModelConfig
from vbl_ros.model.transforms import InputTransform, Normalize

__all__ = [
    "DescriptorExtractor",
    "DescriptorNet",
    "HallucinationNet",
    "InputTransform",
    "ModelConfig",
    "Normalize",
    "SideBranchConfig",
    "build_net",
    "default_model",
    "init_model",
    "initialize_model",
    "load_model",
    "model_fingerprint",
    "read_image_folder",
    "resolve_device",
    "save_model",
]
