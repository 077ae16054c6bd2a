"""PS-ViT: vision transformer with progressive sampling. Importing registers it with the transformers Auto classes."""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
)
from transformers.models.auto import modeling_auto

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
# The image-segmentation pipeline checks support against a copy of the static name tables (not the registered
# classes); listing the class there under our model_type, unknown to transformers, avoids a spurious "not supported".
modeling_auto.MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES.setdefault(
    PsVitConfig.model_type, PsVitForSemanticSegmentation.__name__
)

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
