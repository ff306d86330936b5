"""Descriptor network: backbones, aggregation layers, model files and the extractor.

``DescriptorNet`` = truncated CNN backbone + GeM or NetVLAD (+ projection) + L2 norm;
``DescriptorExtractor`` turns RGB images into unit-L2 float32 descriptors; ``initialize_model``
fits NetVLAD's centres and a PCA projection on a bag (no training).
"""

from vbl_ros.model.extractor import DescriptorExtractor, resolve_device
from vbl_ros.model.init import init_model, initialize_model
from vbl_ros.model.io import default_model, load_model, model_fingerprint, save_model
from vbl_ros.model.net import DescriptorNet, ModelConfig

__all__ = [
    "DescriptorExtractor",
    "DescriptorNet",
    "ModelConfig",
    "default_model",
    "init_model",
    "initialize_model",
    "load_model",
    "model_fingerprint",
    "resolve_device",
    "save_model",
]
