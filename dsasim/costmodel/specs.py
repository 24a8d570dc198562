"""Model specs: DeepSeek-V3-family dimensions read from a Hugging Face ``config.json``.

Field names are the Hugging Face keys (and DeepSeek's ``ModelArgs`` names), so every formula can be
checked against the reference code. A spec with ``index_topk`` set uses DeepSeek Sparse Attention.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

from dsasim.errors import SpecError

MODELS_DIR = Path(__file__).parent / "models"


@dataclass(frozen=True)
class ModelSpec:
    """Dimensions of one DeepSeek-V3-family model (dense MLA, or MLA with the lightning indexer)."""

    name: str
    hidden_size: int
    num_hidden_layers: int
    num_nextn_predict_layers: int
    first_k_dense_replace: int
    intermediate_size: int
    moe_intermediate_size: int
    n_routed_experts: int
    n_shared_experts: int
    num_experts_per_tok: int
    num_attention_heads: int
    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    vocab_size: int
    max_position_embeddings: int
    index_n_heads: int = 0
    index_head_dim: int = 0
    index_topk: int = 0

    @property
    def uses_dsa(self) -> bool:
        """True when the model has a lightning indexer and attends only its top-k keys."""
        return self.index_topk > 0

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def moe_layers(self) -> int:
        return self.num_hidden_layers - self.first_k_dense_replace

    @property
    def dense_ffn_layers(self) -> int:
        return self.first_k_dense_replace


_REQUIRED = [f.name for f in fields(ModelSpec) if f.name not in ("name", "index_n_heads", "index_head_dim", "index_topk")]
_INDEXER_KEYS = ("index_n_heads", "index_head_dim", "index_topk")


def known_models() -> list[str]:
    """Names of the shipped model specs."""
    return sorted(path.stem for path in MODELS_DIR.glob("*.json"))


def _resolve(name_or_path: str) -> tuple[Path, str]:
    looks_like_path = name_or_path.endswith(".json") or "/" in name_or_path or "\\" in name_or_path
    if looks_like_path:
        path = Path(name_or_path)
        if path.is_dir():
            raise SpecError(f"model config '{name_or_path}' is a folder: pass the path of its config.json")
        if not path.is_file():
            raise SpecError(f"model config '{name_or_path}' not found: pass a shipped name ({', '.join(known_models())}) or a path to a config.json")
        return path, path.parent.name if path.name == "config.json" else path.stem
    path = MODELS_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise SpecError(f"unknown model '{name_or_path}' (known: {', '.join(known_models())}); or pass a path to a config.json")
    return path, name_or_path


def spec_from_config(config: dict[str, object], name: str, origin: str = "<dict>") -> ModelSpec:
    """Build a spec from a parsed config.json, checking that every needed key is a positive integer."""
    values: dict[str, int] = {}
    for key in _REQUIRED:
        if key not in config:
            raise SpecError(f"{origin}: missing key '{key}': a DeepSeek-V3-family config.json is expected")
        values[key] = _positive_int(config[key], key, origin, allow_zero=key in ("num_nextn_predict_layers", "first_k_dense_replace"))

    present = [key for key in _INDEXER_KEYS if config.get(key) is not None]
    if present and len(present) != len(_INDEXER_KEYS):
        missing = sorted(set(_INDEXER_KEYS) - set(present))
        raise SpecError(f"{origin}: indexer keys incomplete, missing {', '.join(missing)}: give all of {', '.join(_INDEXER_KEYS)} or none")
    for key in present:
        values[key] = _positive_int(config[key], key, origin)

    if values["first_k_dense_replace"] > values["num_hidden_layers"]:
        raise SpecError(f"{origin}: first_k_dense_replace={values['first_k_dense_replace']} exceeds num_hidden_layers={values['num_hidden_layers']}")
    if values["num_experts_per_tok"] > values["n_routed_experts"]:
        raise SpecError(f"{origin}: num_experts_per_tok={values['num_experts_per_tok']} exceeds n_routed_experts={values['n_routed_experts']}")
    return ModelSpec(name=name, **values)


def _positive_int(value: object, key: str, origin: str, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{origin}: key '{key}' is {value!r}: an integer is expected")
    if value < 0 or (value == 0 and not allow_zero):
        raise SpecError(f"{origin}: key '{key}' is {value}: a {'non-negative' if allow_zero else 'positive'} integer is expected")
    return value


@lru_cache(maxsize=32)
def load_spec(name_or_path: str) -> ModelSpec:
    """Load a shipped spec by name (``deepseek-v3.2-exp``) or a DeepSeek-V3-family config.json by path."""
    path, name = _resolve(name_or_path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"model config '{path}' could not be read: {error}") from error
    except json.JSONDecodeError as error:
        raise SpecError(f"model config '{path}' is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})") from error
    if not isinstance(config, dict):
        raise SpecError(f"model config '{path}' must contain a JSON object, found {type(config).__name__}")
    return spec_from_config(config, name=name, origin=str(path))
