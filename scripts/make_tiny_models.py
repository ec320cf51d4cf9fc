#!/usr/bin/env python3
"""Build random-weight checkpoints with the released models' configs, for tests and benchmarks.

    python scripts/make_tiny_models.py OUT_DIR                 # tiny models, a few seconds
    python scripts/make_tiny_models.py OUT_DIR --full          # also full-size DSM (about 4 GB)
    python scripts/make_tiny_models.py OUT_DIR --full-pocket   # also full-size Spanish Pocket TTS

The tiny models differ from the released ones in size only. OUT_DIR/dsm holds a Kyutai DSM TTS
checkpoint whose config.json is `kyutai/tts-1.6b-en_fr`'s (scripts/reference_configs/) with
smaller widths, depths, codebooks and vocabularies, plus its own Mimi config through
`mimi_config_name`; a sentencepiece tokenizer and a voice embedding. OUT_DIR/pocket holds one
Pocket TTS config per language, each the pocket-tts package's own `config/<language>.yaml` with
smaller sizes (scripts/tiny_pocket.py). OUT_DIR/env holds NAME=VALUE lines that point the service
at these models. Nothing is downloaded: the models are built with moshi's and pocket-tts's own
constructors and load back through `CheckpointInfo` and `TTSModel.load_model`, exactly as real
weights do. Random weights make noise, not speech, but cost the same compute per step.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import sys
from pathlib import Path


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
REFERENCE_DSM = Path(__file__).resolve().parent / "reference_configs" / "tts-1.6b-en_fr.json"
# The tiny DSM's sizes; every other field of config.json is the released one.
TINY_DSM = {"card": 64, "n_q": 8, "dim": 64, "num_heads": 4, "num_layers": 2,
            "depformer_dim": 32, "depformer_num_heads": 4, "depformer_num_layers": 1,
            "depformer_dim_feedforward": 64, "depformer_low_rank_embeddings": 16, "speaker_dim": 16}


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


def reference_dsm_config() -> dict:
    """`kyutai/tts-1.6b-en_fr`'s config.json, as collected in scripts/reference_configs/."""
    return json.loads(REFERENCE_DSM.read_text())


def dsm_config(full: bool, text_card: int) -> dict:
    """The released config.json with only its sizes changed (none when `full`).

    The tiny model keeps the first codebooks' delays and depformer schedule entries, so its
    streams line up exactly like the first `n_q` streams of the released model.
    """
    config = reference_dsm_config()
    config["mimi_config_name"] = "mimi_config.json"
    if full:
        return config
    sizes = TINY_DSM
    n_q = sizes["n_q"]
    config.update({key: value for key, value in sizes.items() if key != "speaker_dim"})
    config["dep_q"] = n_q
    config["text_card"] = text_card
    config["delays"] = config["delays"][:n_q + 1]
    config["depformer_weights_per_step_schedule"] = config["depformer_weights_per_step_schedule"][:n_q]
    config["conditioners"]["speaker_wavs"]["tensor"]["dim"] = sizes["speaker_dim"]
    config["conditioners"]["control"]["lut"]["dim"] = sizes["dim"]
    return config


# Keys of config.json that `CheckpointInfo.from_hf_repo` keeps away from the LM constructor.
NOT_LM_KWARGS = {"moshi_name", "mimi_name", "mimi_config_name", "tokenizer_name", "lora_name",
                 "model_type", "lm_gen_config", "tts_config", "stt_config", "model_id"}


def build_dsm(out: Path, full: bool = False, seed: int = 0) -> Path:
    """Write a random-weight DSM TTS checkpoint directory and return it."""
    import torch
    from moshi.models import loaders
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(out / Path(reference_dsm_config()["tokenizer_name"]).stem, vocab_size=120)
    import sentencepiece as spm
    text_card = spm.SentencePieceProcessor(model_file=str(tokenizer)).vocab_size()

    config = dsm_config(full, text_card)
    assert config["tokenizer_name"] == tokenizer.name
    (out / "config.json").write_text(json.dumps(config, indent=2))
    mimi_cfg = mimi_config(full)
    (out / "mimi_config.json").write_text(json.dumps(mimi_cfg, indent=2))

    mimi = loaders.get_mimi(None, mimi_cfg, device="cpu")
    save_file({k: v.contiguous() for k, v in mimi.state_dict().items()}, out / config["mimi_name"])

    lm_kwargs = copy.deepcopy({k: v for k, v in config.items() if k not in NOT_LM_KWARGS})
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
    save_file({"speaker_wavs": embedding}, voices / voice_file_name(config))
    return out


def voice_file_name(config: dict) -> str:
    """A voice embedding's name for a model: `<voice>.<sig>@<epoch>.safetensors`, as moshi expects."""
    model_id = config["model_id"]
    return f"{VOICE_NAME}.{model_id['sig']}@{model_id['epoch']}.safetensors"


def build_pocket(out: Path, seed: int = 0) -> Path:
    """Build the tiny Pocket TTS models, one per language (scripts/tiny_pocket.py)."""
    from tiny_pocket import build_pocket as _build

    return _build(out, seed=seed)


def write_env(out: Path, pocket_dir: Path, dsm_config_path: Path) -> Path:
    """OUT/env: the DSM settings, then the Pocket ones written by tiny_pocket.py."""
    config = json.loads(dsm_config_path.read_text())
    lines = [
        f"TTS_DSM_MODEL={out / 'dsm'}",
        f"TTS_DSM_VOICE={out / 'dsm' / 'voices' / voice_file_name(config)}",
        f"TTS_DSM_N_Q={config['n_q']}",
        "TTS_DEVICE=cpu",
    ]
    lines += [line for line in (pocket_dir / "env").read_text().splitlines() if line.strip()]
    path = out / "env"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--full", action="store_true",
                        help="also build a full-size random-weight DSM model in OUT_DIR/dsm-full")
    parser.add_argument("--full-pocket", action="store_true",
                        help="also build a full-size random-weight Spanish Pocket TTS model "
                             "in OUT_DIR/pocket-full/es.yaml")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    out = args.out_dir.resolve()
    build_dsm(out / "dsm")
    pocket_dir = build_pocket(out / "pocket")
    if args.full:
        build_dsm(out / "dsm-full", full=True)
    if args.full_pocket:
        from tiny_pocket import build_full_pocket
        build_full_pocket(out / "pocket-full", language="es")
    env = write_env(out, pocket_dir, out / "dsm" / "config.json")
    print(f"models written to {out}; settings in {env}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
