"""dsasim: cost per token of dense MLA and DeepSeek Sparse Attention serving, from a FLOP/byte model."""

__version__ = "0.1.0"
