"""Byte widths of the number formats the model moves, and the cache formats built from them.

No other module states how many bytes a value takes.
"""

from __future__ import annotations

from typing import Literal

DTYPE_BYTES: dict[str, int] = {"fp8": 1, "bf16": 2, "fp32": 4, "int32": 4}

# FP8 activations and caches carry one FP32 scale per block of this many values (DeepSeek's format).
FP8_SCALE_BLOCK_VALUES = 128
FP8_SCALE_DTYPE = "fp32"

LatentCacheFormat = Literal["bf16", "fp8"]
LATENT_CACHE_FORMATS: tuple[str, ...] = ("bf16", "fp8")


def fp8_bytes_with_scales(values: int) -> float:
    """Bytes of `values` FP8 numbers plus their per-block FP32 scales."""
    scale_blocks = -(-values // FP8_SCALE_BLOCK_VALUES)  # ceiling division
    return values * DTYPE_BYTES["fp8"] + scale_blocks * DTYPE_BYTES[FP8_SCALE_DTYPE]


def fp8_weight_bytes(in_features: int, out_features: int) -> float:
    """Bytes of an FP8 weight matrix with one FP32 scale per 128 x 128 block (DeepSeek's weight format)."""
    row_blocks = -(-in_features // FP8_SCALE_BLOCK_VALUES)
    column_blocks = -(-out_features // FP8_SCALE_BLOCK_VALUES)
    scale_bytes = row_blocks * column_blocks * DTYPE_BYTES[FP8_SCALE_DTYPE]
    return in_features * out_features * DTYPE_BYTES["fp8"] + scale_bytes


def latent_cache_bytes_per_token(kv_lora_rank: int, qk_rope_head_dim: int, fmt: str) -> float:
    """Bytes one token's MLA latent cache entry takes in one layer.

    bf16: latent and RoPE key in BF16 (512 + 64 values: 1152 B for DeepSeek-V3).
    fp8: latent in FP8 e4m3 with per-128 FP32 scales, RoPE key kept in BF16 (656 B), FlashMLA's sparse format.
    fp32: every value in FP32, the format of the float32 reference kernels (not a serving format).
    """
    if fmt in ("bf16", "fp32"):
        return (kv_lora_rank + qk_rope_head_dim) * DTYPE_BYTES[fmt]
    if fmt == "fp8":
        return fp8_bytes_with_scales(kv_lora_rank) + qk_rope_head_dim * DTYPE_BYTES["bf16"]
    raise ValueError(f"unknown latent cache format {fmt!r} (known: {', '.join(LATENT_CACHE_FORMATS)})")


def index_cache_bytes_per_token(index_head_dim: int, fmt: str = "fp8") -> float:
    """Bytes one token's lightning-indexer key takes in one layer: FP8 values plus one FP32 scale (132 B).

    Other formats (``bf16``, ``fp32``) store the key unquantised, as the reference kernels do without FP8.
    """
    if fmt == "fp8":
        return fp8_bytes_with_scales(index_head_dim)
    return index_head_dim * DTYPE_BYTES[fmt]
