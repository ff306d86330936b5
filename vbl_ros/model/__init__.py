"""Descriptor network: image transforms, backbones, aggregation layers, model files and the extractor.

``InputTransform`` / ``Normalize`` turn RGB uint8 images into the network input (one place, shared
by the extractor, the initialisation, and next training and export); ``DescriptorNet`` = truncated
CNN backbone + GeM or NetVLAD (+ projection) + L2 norm, which can also return its feature map and
freeze its first backbone stages; ``DescriptorExtractor`` turns RGB images into unit-L2 float32
descriptors; ``initialize_model`` fits NetVLAD's centres and a PCA projection on a bag or on images
(no training).
"""

from vbl_ros.model.extractor import DescriptorExtractor, resolve_device
from vbl_ros.model.image_folder import read_image_folder
from vbl_ros.model.init import init_model, initialize_model
from vbl_ros.model.io import default_model, load_model, model_fingerprint, save_model
from vbl_ros.model.net import DescriptorNet, ModelConfig
from vbl_ros.model.transforms import InputTransform, Normalize

__all__ = [
    "DescriptorExtractor",
    "DescriptorNet",
    "InputTransform",
    "ModelConfig",
    "Normalize",
    "default_model",
    "init_model",
    "initialize_model",
    "load_model",
    "model_fingerprint",
    "read_image_folder",
    "resolve_device",
    "save_model",
]
