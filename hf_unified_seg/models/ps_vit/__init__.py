"""PS-ViT: vision transformer with progressive sampling. Importing registers it with the transformers Auto classes."""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
)

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
