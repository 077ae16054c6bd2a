"""X-Decoder: generalized decoding for pixel, image and language (dissertation seed 000, chapter 4).

Importing this package registers the config, image processor and processor with the transformers Auto classes.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoProcessor

from .configuration_x_decoder import XDecoderConfig
from .image_processing_x_decoder import XDecoderImageProcessor
from .processing_x_decoder import DEFAULT_PROMPT_TEMPLATES, XDecoderProcessor

AutoConfig.register(XDecoderConfig.model_type, XDecoderConfig, exist_ok=True)
AutoImageProcessor.register(XDecoderConfig, image_processor_classes={"pil": XDecoderImageProcessor}, exist_ok=True)
AutoProcessor.register(XDecoderConfig, XDecoderProcessor, exist_ok=True)

__all__ = ["DEFAULT_PROMPT_TEMPLATES", "XDecoderConfig", "XDecoderImageProcessor", "XDecoderProcessor"]
