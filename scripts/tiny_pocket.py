"""A tiny random-weight Pocket TTS model, built through the pocket-tts package's own config loading.

The YAML written here has the schema of the package's `config/spanish.yaml` with small
dimensions; its `weights_path` points at the random weights saved next to it, so the service
loads it with `TTSModel.load_model(config=...)` exactly as it loads a released model.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from make_tiny_models import train_tokenizer

VOICE_NAME = "tiny-es"


def pocket_yaml(tokenizer: Path, n_bins: int, weights: Path | None) -> str:
    weights_line = f"weights_path: {weights}\n" if weights else ""
    return f"""{weights_line}
replace_characters:
  '¡': ''
  '¿': ''

flow_lm:
  insert_bos_before_voice: true
  dtype: float32
  flow:
    depth: 1
    dim: 32
  transformer:
    d_model: 64
    hidden_scale: 2
    max_period: 10000
    num_heads: 4
    num_layers: 2
  lookup_table:
    dim: 64
    n_bins: {n_bins}
    tokenizer: sentencepiece
    tokenizer_path: {tokenizer}

mimi:
  dtype: float32
  sample_rate: 24000
  inner_dim: 8
  outer_dim: 32
  channels: 1
  frame_rate: 12.5
  seanet:
    dimension: 32
    channels: 1
    n_filters: 4
    n_residual_layers: 1
    ratios: [6, 5, 4]
    kernel_size: 7
    residual_kernel_size: 3
    last_kernel_size: 3
    dilation_base: 2
    pad_mode: constant
    compress: 2
  transformer:
    d_model: 32
    num_heads: 2
    num_layers: 1
    layer_scale: 0.01
    context: 250
    dim_feedforward: 64
    input_dimension: 32
    output_dimensions: [32]
  quantizer:
    dimension: 8
    output_dimension: 32
"""


def voice_wav(path: Path, seconds: float = 3.0, rate: int = 24000) -> None:
    """A non-silent voice prompt: a gliding vowel-like tone with a little noise."""
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    pitch = 140 + 20 * np.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * np.cumsum(pitch) / rate
    signal = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2
    signal += np.random.default_rng(0).normal(0, 0.01, t.size)
    sf.write(path, signal.astype(np.float32), rate, subtype="PCM_16")


def build_pocket(out: Path, seed: int = 0) -> Path:
    import safetensors.torch
    import sentencepiece as spm
    import torch
    from pocket_tts.models.tts_model import TTSModel
    from pocket_tts.utils.config import load_config

    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(out / "tokenizer", vocab_size=120)
    n_bins = spm.SentencePieceProcessor(model_file=str(tokenizer)).vocab_size()

    skeleton = out / "skeleton.yaml"
    skeleton.write_text(pocket_yaml(tokenizer, n_bins, None))
    config = load_config(skeleton)
    model = TTSModel._from_pydantic_config_with_weights(config, 0.3, 1, None, -4.0)
    with torch.no_grad():
        model.flow_lm.speaker_proj_weight.normal_(0, 0.05)
        # Random weights would say "end of speech" at random; a low EOS bias makes the length
        # follow the text (the package caps generation by the number of tokens).
        model.flow_lm.out_eos.bias.fill_(-50.0)
    weights = out / "pocket_tiny.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    skeleton.unlink()
    (out / "pocket_tiny.yaml").write_text(pocket_yaml(tokenizer, n_bins, weights))

    voices = out / "voices"
    voices.mkdir(exist_ok=True)
    voice_wav(voices / f"{VOICE_NAME}.wav")
    (out / "env").write_text("\n".join([
        f"TTS_POCKET_CONFIG={out / 'pocket_tiny.yaml'}",
        f"TTS_VOICE_DIR={voices}",
        f"TTS_POCKET_VOICE={VOICE_NAME}",
    ]) + "\n")
    return out
