"""Shared building blocks, one concept per file; models compose them and never copy them.

- `antialias`: BlurPool and the content-aware adaptive low-pass filter (anti-aliased ResNet).
- `attention`, `drop_path`: pre-norm transformer encoder layer and stochastic depth (PS-ViT).
- `position_encoding`: 2-D sine positional encoding.
- `pixel_decoder`: transformer-encoder FPN producing multi-scale memory and mask features.
- `mask_decoder`: masked-attention decoder over query groups (X-Decoder, reused by SEEM / FIND / PSALM).
- `attention_mask`: pure functions building the self-attention mask between query groups.
- `language`: frozen language model -> decoder-space embeddings bridge.
- `matcher`, `criterion`: Hungarian matching and set losses.
- `classification_loss`: hard- or soft-label image classification loss.
- `image_processing`: PIL-backend image processor base for classification / semantic models.
- `postprocess`: semantic / instance / panoptic / referring post-processing.
"""
