"""PS-ViT: vision transformer with progressive sampling. Importing registers it with the transformers Auto classes."""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
)

from ...pipelines import add_to_pipeline_support
from .configuration_ps_vit import PsVitConfig
from .image_processing_ps_vit import PsVitImageProcessor
from .modeling_ps_vit import (
    PsVitForImageClassification,
    PsVitForSemanticSegmentation,
    PsVitImageClassifierOutput,
    PsVitModel,
    PsVitModelOutput,
    PsVitPreTrainedModel,
    PsVitSemanticSegmenterOutput,
    bilinear_sample,
    initial_sampling_points,
)

AutoConfig.register(PsVitConfig.model_type, PsVitConfig, exist_ok=True)
AutoModel.register(PsVitConfig, PsVitModel, exist_ok=True)
AutoModelForImageClassification.register(PsVitConfig, PsVitForImageClassification, exist_ok=True)
AutoModelForSemanticSegmentation.register(PsVitConfig, PsVitForSemanticSegmentation, exist_ok=True)
AutoImageProcessor.register(PsVitConfig, image_processor_classes={"pil": PsVitImageProcessor}, exist_ok=True)
# The image-segmentation pipeline's support check reads transformers' static name tables (see
# `add_to_pipeline_support`); without this it logs "not supported" for a model that works.
add_to_pipeline_support("semantic-segmentation", PsVitConfig.model_type, PsVitForSemanticSegmentation.__name__)

__all__ = [
    "PsVitConfig",
    "PsVitForImageClassification",
    "PsVitForSemanticSegmentation",
    "PsVitImageClassifierOutput",
    "PsVitImageProcessor",
    "PsVitModel",
    "PsVitModelOutput",
    "PsVitPreTrainedModel",
    "PsVitSemanticSegmenterOutput",
    "bilinear_sample",
    "initial_sampling_points",
]
