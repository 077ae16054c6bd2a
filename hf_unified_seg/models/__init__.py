"""Model families. Importing a family registers it with the transformers Auto classes."""

from . import antialiased_resnet, ps_vit, x_decoder  # noqa: F401
