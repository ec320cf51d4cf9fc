#!/usr/bin/env python3
"""Build random-weight checkpoints with the real architectures, for tests and benchmarks.

    python scripts/make_tiny_models.py OUT_DIR            # tiny models, a few seconds
    python scripts/make_tiny_models.py OUT_DIR --full     # also full-size DSM (about 4 GB)

OUT_DIR/dsm holds a Kyutai DSM TTS checkpoint laid out like `kyutai/tts-1.6b-en_fr`
(config.json with a speaker cross-attention conditioner, a CFG look-up conditioner, a
look-ahead second text stream and a depformer weights-per-step schedule; its own Mimi config
through `mimi_config_name`; a sentencepiece tokenizer; a voice embedding). OUT_DIR/env holds
NAME=VALUE lines that point the service at these models. Nothing is downloaded: the models
are built with moshi's own constructors and load back through `CheckpointInfo`, exactly as
real weights do. Random weights make noise, not speech, but cost the same compute per step.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import sys
from pathlib import Path

import numpy as np

TOKENIZER_LINES = [
    "Hello, I am Capibara6 with a natural voice.",
    "Bonjour, je suis une voix naturelle et gratuite.",
    "Hola, soy Capibara6 con voz natural de Kyutai.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Le vif renard brun saute par-dessus le chien paresseux.",
    "El veloz murciélago hindú comía feliz cardillo y kiwi.",
    "Numbers like 1, 2, 3, 42 and 2026 are read aloud by the model.",
    "Speech synthesis turns written words into sound, one frame at a time.",
    "¿Qué tal? ¡Muy bien, gracias! Ça va? Oui, très bien.",
]

VOICE_NAME = "tiny-voice"
MODEL_SIG = "0000tiny"
MODEL_EPOCH = 0
CFG_VALUES = ["1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0"]


def train_tokenizer(path_prefix: Path, vocab_size: int) -> Path:
    """Train a small sentencepiece model; ids 0-3 stay special like Kyutai's tokenizers."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TOKENIZER_LINES * 4),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        hard_vocab_limit=False,
        unk_id=0, bos_id=1, eos_id=2, pad_id=3,
        minloglevel=2,
    )
    path = path_prefix.with_suffix(".model")
    path.write_bytes(model.getvalue())
    return path


def mimi_config(full: bool) -> dict:
    """Mimi's architecture: moshi's own defaults at full size, a scaled-down copy otherwise."""
    from moshi.models import loaders

    config = copy.deepcopy(loaders._mimi_config)
    if full:
        return config
    config["seanet"].update(dimension=32, n_filters=4)
    config["quantizer"].update(dimension=16, n_q=8, bins=64, input_dimension=32, output_dimension=32)
    config["transformer"].update(d_model=32, num_heads=2, num_layers=1, dim_feedforward=64,
                                 input_dimension=32, output_dimensions=[32])
    return config


def dsm_config(full: bool, text_card: int, tokenizer_name: str) -> dict:
    """A config.json with the structure of `kyutai/tts-1.6b-en_fr`."""
    n_q = 32 if full else 8
    card = 2048 if full else 64
    speaker_dim = 512 if full else 16
    schedule = list(range(8)) + [8] * (n_q - 8) if full else [0, 1, 2, 3, 3, 3, 3, 3]
    return {
        "moshi_name": f"dsm_tts_{MODEL_SIG}@{MODEL_EPOCH}.safetensors",
        "mimi_name": "mimi.safetensors",
        "mimi_config_name": "mimi_config.json",
        "tokenizer_name": tokenizer_name,
        "model_id": {"sig": MODEL_SIG, "epoch": MODEL_EPOCH},
        "card": card,
        "n_q": n_q,
        "dep_q": n_q,
        # Text first, then the semantic codebook, then the delayed acoustic ones.
        "delays": [0, 0] + [2] * (n_q - 1),
        "dim": 2048 if full else 64,
        "text_card": text_card,
        "existing_text_padding_id": 3,
        "num_heads": 16 if full else 4,
        "num_layers": 16 if full else 2,
        "hidden_scale": 4.125,
        "causal": True,
        "layer_scale": None,
        "context": 500,
        "max_period": 10000,
        "gating": "silu",
        "norm": "rms_norm_f32",
        "positional_embedding": "rope",
        "depformer_dim": 1024 if full else 32,
        "depformer_num_heads": 16 if full else 4,
        "depformer_num_layers": 4 if full else 1,
        "depformer_dim_feedforward": 3072 if full else 64,
        "depformer_multi_linear": True,
        "depformer_pos_emb": "none",
        "depformer_weights_per_step": True,
        "depformer_weights_per_step_schedule": schedule,
        "depformer_low_rank_embeddings": 128 if full else 16,
        "demux_second_stream": True,
        "text_card_out": None,
        "cross_attention": True,
        "conditioners": {
            "speaker_wavs": {"type": "tensor", "tensor": {"dim": speaker_dim}},
            "cfg": {"type": "lut", "lut": {"n_bins": len(CFG_VALUES), "dim": 16, "tokenizer": "noop",
                                           "possible_values": CFG_VALUES}},
            "control": {"type": "lut", "lut": {"n_bins": 1, "dim": 16, "tokenizer": "noop",
                                               "possible_values": ["ok"]}},
        },
        "fuser": {"sum": ["control", "cfg"], "cross": ["speaker_wavs"],
                  "cross_attention_pos_emb": True, "cross_attention_pos_emb_scale": 1.0},
        "tts_config": {"audio_delay": 1.28 if full else 0.16, "second_stream_ahead": 2},
        "stt_config": {},
        "lm_gen_config": {"temp": 0.6, "temp_text": 0.6, "top_k": 250, "top_k_text": 50},
    }


def build_dsm(out: Path, full: bool = False, seed: int = 0) -> Path:
    """Write a random-weight DSM TTS checkpoint directory and return it."""
    import torch
    from moshi.models import loaders
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(out / "tokenizer_spm_tiny", vocab_size=120)
    import sentencepiece as spm
    text_card = spm.SentencePieceProcessor(model_file=str(tokenizer)).vocab_size()

    config = dsm_config(full, text_card, tokenizer.name)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    mimi_cfg = mimi_config(full)
    (out / "mimi_config.json").write_text(json.dumps(mimi_cfg, indent=2))

    mimi = loaders.get_mimi(None, mimi_cfg, device="cpu")
    save_file({k: v.contiguous() for k, v in mimi.state_dict().items()}, out / config["mimi_name"])

    lm_kwargs = copy.deepcopy({k: v for k, v in config.items() if k not in {
        "moshi_name", "mimi_name", "mimi_config_name", "tokenizer_name", "model_id",
        "tts_config", "stt_config", "lm_gen_config"}})
    dtype = torch.bfloat16 if full else torch.float32
    lm = loaders.get_moshi_lm(None, lm_kwargs=lm_kwargs, device="cpu", dtype=dtype)
    state = {k: v.contiguous() for k, v in lm.state_dict().items()}
    save_file(state, out / config["moshi_name"])
    del lm, state

    # A voice embedding as `kyutai/tts-voices` ships them: [1, speaker_dim, frames].
    speaker_dim = config["conditioners"]["speaker_wavs"]["tensor"]["dim"]
    voices = out / "voices"
    voices.mkdir(exist_ok=True)
    embedding = torch.randn(1, speaker_dim, 10 if not full else 125)
    save_file({"speaker_wavs": embedding}, voices / f"{VOICE_NAME}.{MODEL_SIG}@{MODEL_EPOCH}.safetensors")
    return out


def build_pocket(out: Path, seed: int = 0) -> Path | None:
    """Build the tiny Pocket TTS model when its builder is available."""
    try:
        from tiny_pocket import build_pocket as _build  # type: ignore
    except ImportError:
        return None
    return _build(out, seed=seed)


def write_env(out: Path, pocket_dir: Path | None) -> Path:
    lines = [
        f"TTS_DSM_MODEL={out / 'dsm'}",
        f"TTS_DSM_VOICE={out / 'dsm' / 'voices' / f'{VOICE_NAME}.{MODEL_SIG}@{MODEL_EPOCH}.safetensors'}",
        "TTS_DSM_N_Q=8",
        "TTS_DEVICE=cpu",
    ]
    if pocket_dir is not None:
        env_file = pocket_dir / "env"
        if env_file.exists():
            lines += env_file.read_text().split()
    path = out / "env"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--full", action="store_true",
                        help="also build a full-size random-weight DSM model in OUT_DIR/dsm-full")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    out = args.out_dir.resolve()
    build_dsm(out / "dsm")
    pocket_dir = build_pocket(out / "pocket")
    if args.full:
        build_dsm(out / "dsm-full", full=True)
    env = write_env(out, pocket_dir)
    print(f"models written to {out}; settings in {env}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
