"""Text classification by fine-tuning a pretrained encoder (Hugging Face transformers)."""
from .task import TextTask  # noqa: F401
