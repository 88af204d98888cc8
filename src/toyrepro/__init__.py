"""toyrepro: toy-scale, honest reproductions of language-model papers."""

__version__ = "0.1.0"
