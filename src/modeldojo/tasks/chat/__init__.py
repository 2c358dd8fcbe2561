"""LLM instruction tuning (chat): fine-tune a causal LM on question/answer conversations with LoRA, ReFT or
full weights; evaluate it against prompting and retrieval; chat with it, export it and serve it."""
from .task import ChatTask  # noqa: F401
