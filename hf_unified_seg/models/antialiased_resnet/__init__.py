"""Anti-aliased ResNet with content-aware low-pass filters (dissertation seed 000, chapter 2).

Importing this package registers the model with the transformers Auto classes (config, base model, image
classification, semantic segmentation, backbone, image processor) and with the pipelines' supported-model lists.
"""

from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
)

from ...pipelines import add_to_pipeline_support
from .configuration_antialiased_resnet import AA_MODES, AntiAliasedResNetConfig
from .image_processing_antialiased_resnet import AntiAliasedResNetImageProcessor
from .modeling_antialiased_resnet import (
    AntiAliasedResNetBackbone,
    AntiAliasedResNetForImageClassification,
    AntiAliasedResNetForSemanticSegmentation,
    AntiAliasedResNetModel,
    AntiAliasedResNetModelOutput,
    AntiAliasedResNetPreTrainedModel,
)

AutoConfig.register(AntiAliasedResNetConfig.model_type, AntiAliasedResNetConfig, exist_ok=True)
AutoModel.register(AntiAliasedResNetConfig, AntiAliasedResNetModel, exist_ok=True)
AutoModelForImageClassification.register(
    AntiAliasedResNetConfig, AntiAliasedResNetForImageClassification, exist_ok=True
)
AutoModelForSemanticSegmentation.register(
    AntiAliasedResNetConfig, AntiAliasedResNetForSemanticSegmentation, exist_ok=True
)
AutoBackbone.register(AntiAliasedResNetConfig, AntiAliasedResNetBackbone, exist_ok=True)
AutoImageProcessor.register(
    AntiAliasedResNetConfig, image_processor_classes={"pil": AntiAliasedResNetImageProcessor}, exist_ok=True
)

# The image-segmentation pipeline's support check reads transformers' static name tables (see
# `add_to_pipeline_support`); without this it logs "not supported" for a model that works.
add_to_pipeline_support(
    "semantic-segmentation", AntiAliasedResNetConfig.model_type, AntiAliasedResNetForSemanticSegmentation.__name__
)

__all__ = [
    "AA_MODES",
    "AntiAliasedResNetBackbone",
    "AntiAliasedResNetConfig",
    "AntiAliasedResNetForImageClassification",
    "AntiAliasedResNetForSemanticSegmentation",
    "AntiAliasedResNetImageProcessor",
    "AntiAliasedResNetModel",
    "AntiAliasedResNetModelOutput",
    "AntiAliasedResNetPreTrainedModel",
]
