"""Image classification: fine-tune a pretrained vision backbone on your own images."""
from .task import ImageTask  # noqa: F401  (registers the task)
