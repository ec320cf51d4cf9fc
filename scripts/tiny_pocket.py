"""Random-weight Pocket TTS models derived from the pocket-tts package's own per-language configs.

Each `<language>.yaml` written here is the installed package's `pocket_tts/config/<name>.yaml`
loaded as data, with only its sizes (widths, depths, heads, vocabulary, Mimi sizes), its weight
path and its tokenizer path replaced. Everything that shapes how text is handled stays exactly as
released (`replace_characters`, `remove_semicolons`, `capitalize_first_letter`, the `tokenizers`
tokenizer kind, sample and frame rates, dtypes, ...), so the service meets the same text handling
in tests as in production. The tokenizer is a small SentencePiece-style unigram model in the
`tokenizers` JSON format, the kind the released configs point at (`tokenizer: tokenizers`;
see `pocket_tts/modules/text_conditioner.py`, `JsonTokenizer`, and the `tokenizers` package's
`SentencePieceUnigramTokenizer` for the normalizer and Metaspace pre-tokenizer layout).
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import numpy as np

# Language code -> the package's config name, for every language the service can route to Pocket.
LANGUAGES = {"es": "spanish", "fr": "french", "de": "german", "it": "italian",
             "pt": "portuguese", "en": "english", "nl": "dutch"}
VOICE_NAME = "tiny-es"
# Random weights would say "end of speech" at random; a very low EOS bias makes the length follow
# the text instead (the package caps generation at a length estimated from the token count).
EOS_BIAS = -50.0

# Lines in every served language, with accents, quotes, guillemets, digits and punctuation, so the
# tokenizer knows every character the real text handling can leave in place.
TOKENIZER_LINES = [
    "Hola, soy Capibara6 con voz natural de Kyutai.",
    "¿Qué tal? ¡Muy bien, gracias! Dijo: «hola», y el niño comió piña a las 10:30.",
    "El veloz murciélago hindú comía feliz cardillo y kiwi; la cigüeña tocaba el saxofón.",
    "Bonjour, je suis une voix naturelle et gratuite ; « très bien », dit-elle.",
    "Où êtes-vous ? Ça va, l'été est là : Noël, maïs, cœur, garçon, fenêtre.",
    "Guten Tag! Schöne Grüße aus München, sagte er „leise“ – Straße, Größe, Übung.",
    "Buongiorno, perché la città è così bella? «Sì», rispose lui: più caffè, però.",
    "Olá, como está? A canção é bonita, não é? São Paulo, ação, coração, avô, avó.",
    "Hello, I'm a natural voice. \"Quotes\", 'apostrophes', (brackets) [and] more.",
    "Hallo, dit is een natuurlijke stem. Één, twee, drie… Tot ziens!",
    "Numbers: 0 1 2 3 4 5 6 7 8 9, 3.5, 1,000, 42% and 2026 — “curly” ‘quotes’ too.",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ áéíóúàèìòùâêîôûäëïöüãõñçß",
    "ÁÉÍÓÚÀÈÌÒÙÂÊÎÔÛÄËÏÖÜÃÕÑÇ . , ; : ! ? ¡ ¿ ' - ... …",
]
TOKENIZER_VOCAB = 256
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]  # ids 0-3, as in Kyutai's SentencePiece models

# The tiny sizes by path; n_bins comes from the tokenizer. A path whose last key is absent or None
# in the released config is left alone, so optional sizes are only shrunk where a config uses them.
TINY_SIZES: dict[tuple[str, ...], object] = {
    ("flow_lm", "flow", "depth"): 1,
    ("flow_lm", "flow", "dim"): 32,
    ("flow_lm", "transformer", "d_model"): 64,
    ("flow_lm", "transformer", "num_heads"): 4,
    ("flow_lm", "transformer", "num_layers"): 2,
    ("flow_lm", "transformer", "attn_dim"): 64,
    ("flow_lm", "transformer", "num_kv_heads"): 2,
    ("flow_lm", "transformer", "dim_feedforward"): 128,
    ("flow_lm", "z_dim"): 32,
    ("flow_lm", "lookup_table", "dim"): 64,
    ("flow_lm", "lookup_table", "rank"): 16,
    ("mimi", "inner_dim"): 8,
    ("mimi", "outer_dim"): 32,
    ("mimi", "quantizer", "dimension"): 8,
    ("mimi", "quantizer", "output_dimension"): 32,
    **{("mimi", side, key): value
       for side in ("seanet", "decoder_seanet")
       for key, value in (("dimension", 32), ("n_filters", 4))},
    **{("mimi", side, key): value
       for side in ("transformer", "decoder_transformer")
       for key, value in (("d_model", 32), ("num_heads", 2), ("num_layers", 1),
                          ("dim_feedforward", 64), ("input_dimension", 32), ("output_dimensions", [32]))},
}


def real_config_path(name: str) -> Path:
    """The installed package's YAML for a config name (e.g. 'spanish')."""
    import pocket_tts

    return Path(pocket_tts.__file__).resolve().parent / "config" / f"{name}.yaml"


def load_real_config(language: str) -> dict:
    """The released config of a language code, as plain data."""
    import yaml

    with open(real_config_path(LANGUAGES[language]), encoding="utf-8") as f:
        return yaml.safe_load(f)


def _set(config: dict, path: tuple[str, ...], value: object) -> None:
    node = config
    for key in path[:-1]:
        node = node.get(key)
        if not isinstance(node, dict):
            return
    if node.get(path[-1]) is not None:
        node[path[-1]] = copy.deepcopy(value)


def derive_config(real: dict, *, tokenizer: Path, n_bins: int, weights: Path | None,
                  full: bool = False) -> dict:
    """A copy of a released config with its sizes (unless `full`), weights and tokenizer replaced.

    The released file's `weights_path_without_voice_cloning` is dropped (the package falls back
    to it, on Hugging Face, when `weights_path` cannot be read), and so are per-part weight paths.
    """
    config = copy.deepcopy(real)
    if not full:
        for path, value in TINY_SIZES.items():
            _set(config, path, value)
        config["flow_lm"]["lookup_table"]["n_bins"] = n_bins
    config["flow_lm"]["lookup_table"]["tokenizer_path"] = str(tokenizer)
    config.pop("weights_path_without_voice_cloning", None)
    config["flow_lm"].pop("weights_path", None)
    config["mimi"].pop("weights_path", None)
    if weights is None:
        config.pop("weights_path", None)
    else:
        config["weights_path"] = str(weights)  # in place: keeps the released key order
    return config


def train_tokenizer(path: Path, vocab_size: int = TOKENIZER_VOCAB) -> int:
    """Train a unigram `tokenizer.json` laid out like a converted SentencePiece model.

    A few lines cannot fill a large vocabulary, so the table is padded with pieces that ordinary
    text never matches up to exactly `vocab_size` (the config's `n_bins` must equal it).
    """
    import json

    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import Unigram

    tokenizer = Tokenizer(Unigram())
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Nmt(), normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, unk_token="<unk>",
        initial_alphabet=sorted(set("".join(TOKENIZER_LINES))), show_progress=False)
    tokenizer.train_from_iterator(TOKENIZER_LINES * 4, trainer=trainer)
    data = json.loads(tokenizer.to_str())
    pieces = data["model"]["vocab"]
    pieces += [[f"<unused{i}>", -100.0] for i in range(vocab_size - len(pieces))]
    tokenizer = Tokenizer.from_str(json.dumps(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return tokenizer.get_vocab_size()


def voice_wav(path: Path, seconds: float = 3.0, rate: int = 24000) -> None:
    """A non-silent voice prompt: a gliding vowel-like tone with a little noise."""
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    pitch = 140 + 20 * np.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * np.cumsum(pitch) / rate
    signal = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2
    signal += np.random.default_rng(0).normal(0, 0.01, t.size)
    sf.write(path, signal.astype(np.float32), rate, subtype="PCM_16")


def _write_model(config: dict, yaml_path: Path, weights: Path, seed: int) -> None:
    """Build the model a config describes with random weights, save them, then the YAML."""
    import safetensors.torch
    import torch
    import yaml
    from pocket_tts.models.tts_model import TTSModel
    from pocket_tts.utils.config import Config

    torch.manual_seed(seed)
    skeleton = Config(**{k: v for k, v in config.items() if k != "weights_path"})
    package_log = logging.getLogger("pocket_tts.models.tts_model")
    level = package_log.level
    package_log.setLevel(logging.ERROR)  # "model is uninitialized": it is, on purpose
    try:
        model = TTSModel._from_pydantic_config_with_weights(skeleton, 0.3, 1, None, -4.0)
    finally:
        package_log.setLevel(level)
    with torch.no_grad():
        model.flow_lm.speaker_proj_weight.normal_(0, 0.05)
        model.flow_lm.out_eos.bias.fill_(EOS_BIAS)
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    config = {**config, "weights_path": str(weights)}
    yaml_path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")


def build_pocket(out: Path, seed: int = 0, languages: tuple[str, ...] = tuple(LANGUAGES)) -> Path:
    """Write `<language>.yaml` + weights per language, a shared tokenizer, a voice and an env file."""
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = out / "tokenizer.json"
    n_bins = train_tokenizer(tokenizer)
    for index, language in enumerate(languages):
        weights = out / f"{language}.safetensors"
        config = derive_config(load_real_config(language), tokenizer=tokenizer, n_bins=n_bins,
                               weights=weights)
        _write_model(config, out / f"{language}.yaml", weights, seed + index)

    voices = out / "voices"
    voices.mkdir(exist_ok=True)
    voice_wav(voices / f"{VOICE_NAME}.wav")
    (out / "env").write_text("\n".join([
        f"TTS_POCKET_CONFIG={out / 'es.yaml'}",
        f"TTS_POCKET_CONFIG_DIR={out}",
        f"TTS_VOICE_DIR={voices}",
        f"TTS_POCKET_VOICE={VOICE_NAME}",
    ]) + "\n")
    return out


def build_full_pocket(out: Path, language: str = "es", seed: int = 0) -> Path:
    """A full-size random-weight model of one language (the released sizes), for benchmarks.

    Its tokenizer is the small one padded to the released vocabulary size (`n_bins`).
    """
    out.mkdir(parents=True, exist_ok=True)
    real = load_real_config(language)
    tokenizer = out / "tokenizer.json"
    train_tokenizer(tokenizer, vocab_size=real["flow_lm"]["lookup_table"]["n_bins"])
    weights = out / f"{language}.safetensors"
    config = derive_config(real, tokenizer=tokenizer, n_bins=0, weights=weights, full=True)
    _write_model(config, out / f"{language}.yaml", weights, seed)
    return out
