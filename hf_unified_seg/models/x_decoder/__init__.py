"""X-Decoder: generalized decoding for pixel, image and language (dissertation seed 000, chapter 4).

Importing this package registers X-Decoder with the transformers Auto classes (config, base model, universal
segmentation, pretraining, image processor, processor), with this package's Auto classes for referring segmentation,
image-text retrieval and captioning (and so with their pipelines), with the `image-segmentation` pipeline's list of
supported models, and with the workflow trainer as the `"x-decoder"` training task.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageSegmentation,
    AutoModelForPreTraining,
    AutoModelForUniversalSegmentation,
    AutoProcessor,
)

from ...pipelines import (
    AutoModelForImageCaptioning,
    AutoModelForImageTextRetrieval,
    AutoModelForReferringSegmentation,
    add_to_pipeline_support,
)
from .configuration_x_decoder import XDecoderConfig
from .image_processing_x_decoder import XDecoderImageProcessor
from .modeling_x_decoder import (
    FINETUNING_LEVELS,
    XDecoderCaptioningOutput,
    XDecoderForCaptioning,
    XDecoderForImageTextRetrieval,
    XDecoderForPreTraining,
    XDecoderForPreTrainingOutput,
    XDecoderForUniversalSegmentation,
    XDecoderForUniversalSegmentationOutput,
    XDecoderModel,
    XDecoderModelOutput,
    XDecoderPreTrainedModel,
    XDecoderRetrievalOutput,
    efficient_finetuning_groups,
    enable_efficient_finetuning,
)
from .processing_x_decoder import DEFAULT_PROMPT_TEMPLATES, XDecoderProcessor
from .training_x_decoder import X_DECODER_TASK

AutoConfig.register(XDecoderConfig.model_type, XDecoderConfig, exist_ok=True)
AutoModel.register(XDecoderConfig, XDecoderModel, exist_ok=True)
AutoModelForUniversalSegmentation.register(XDecoderConfig, XDecoderForUniversalSegmentation, exist_ok=True)
AutoModelForPreTraining.register(XDecoderConfig, XDecoderForPreTraining, exist_ok=True)
# `pipeline("image-segmentation", model=path)` loads models through AutoModelForImageSegmentation only
AutoModelForImageSegmentation.register(XDecoderConfig, XDecoderForUniversalSegmentation, exist_ok=True)
AutoModelForReferringSegmentation.register(XDecoderConfig, XDecoderForUniversalSegmentation, exist_ok=True)
AutoModelForImageTextRetrieval.register(XDecoderConfig, XDecoderForImageTextRetrieval, exist_ok=True)
AutoModelForImageCaptioning.register(XDecoderConfig, XDecoderForCaptioning, exist_ok=True)
AutoImageProcessor.register(XDecoderConfig, image_processor_classes={"pil": XDecoderImageProcessor}, exist_ok=True)
AutoProcessor.register(XDecoderConfig, XDecoderProcessor, exist_ok=True)
add_to_pipeline_support("universal-segmentation", XDecoderConfig.model_type, XDecoderForUniversalSegmentation.__name__)

__all__ = [
    "DEFAULT_PROMPT_TEMPLATES",
    "FINETUNING_LEVELS",
    "X_DECODER_TASK",
    "XDecoderCaptioningOutput",
    "XDecoderConfig",
    "XDecoderForCaptioning",
    "XDecoderForImageTextRetrieval",
    "XDecoderForPreTraining",
    "XDecoderForPreTrainingOutput",
    "XDecoderForUniversalSegmentation",
    "XDecoderForUniversalSegmentationOutput",
    "XDecoderImageProcessor",
    "XDecoderModel",
    "XDecoderModelOutput",
    "XDecoderPreTrainedModel",
    "XDecoderProcessor",
    "XDecoderRetrievalOutput",
    "efficient_finetuning_groups",
    "enable_efficient_finetuning",
]
