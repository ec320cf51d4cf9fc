"""Every setting of the service: its environment variable, default and validation."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping


class ConfigError(ValueError):
    """A setting has a bad value; the message names the variable."""


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        value = value.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value
    return parse


def _device(value: str) -> str:
    value = value.strip().lower()
    if value in {"auto", "cpu", "cuda"} or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise ValueError("expected auto, cpu, cuda or cuda:N")


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        number = kind(value)
        if number <= 0:
            raise ValueError("must be positive")
        return number
    return parse


def _non_negative(kind: type) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        number = kind(value)
        if number < 0:
            raise ValueError("must not be negative")
        return number
    return parse


def _port(value: str) -> int:
    number = int(value)
    if not 0 < number < 65536:
        raise ValueError("must be between 1 and 65535")
    return number


def _port_or_off(value: str) -> int:
    """A port, or 0 for "this server is off"."""
    return 0 if value.strip() == "0" else _port(value)


def _temperature(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 2:
        raise ValueError("must be between 0 and 2")
    return number


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 < number <= 1:
        raise ValueError("must be more than 0 and at most 1")
    return number


def _language_list(value: str) -> tuple[str, ...]:
    items = tuple(part.strip().lower() for part in value.split(",") if part.strip())
    for item in items:
        if not item.isalpha() or len(item) > 3:
            raise ValueError(f"{item!r} is not a language code like 'es'")
    return items


def _routes(value: str) -> dict[str, str]:
    routes: dict[str, str] = {}
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ValueError(f"{part!r} should look like 'es=pocket'")
        language, engine = (s.strip().lower() for s in part.split("=", 1))
        if engine not in {"dsm", "pocket"}:
            raise ValueError(f"engine {engine!r} for {language!r} must be dsm or pocket")
        routes[language] = engine
    return routes


def parse_heads(value: str) -> tuple[tuple[int, int], ...]:
    """"3:9 4:2" as ((3, 9), (4, 2)); ValueError for anything else."""
    heads = []
    for part in value.replace(",", " ").split():
        layer, sep, head = part.partition(":")
        if not sep or not layer.isdigit() or not head.isdigit():
            raise ValueError(f"{part!r} is not a layer:head pair such as 3:9")
        heads.append((int(layer), int(head)))
    return tuple(dict.fromkeys(heads))


def _word_heads(value: str) -> dict:
    """TTS_POCKET_WORD_HEADS: `3:9 4:2` for every Pocket model, `es=3:9 4:2;de=off` per language."""
    heads: dict = {}
    for part in value.split(";"):
        part = part.strip()
        if not part:
            continue
        language, sep, listed = part.rpartition("=")
        language = language.strip().lower() if sep else None
        if language is not None and (not language.isalpha() or len(language) > 3):
            raise ValueError(f"{language!r} is not a language code like 'es'")
        listed = listed.strip()
        heads[language] = () if listed.lower() == "off" else parse_heads(listed)
        if not heads[language] and listed.lower() != "off":
            raise ValueError(f"{part!r} names no layer:head pair; write 'off' for none")
    return heads


def _rate_limit(value: str) -> str:
    if not value.strip():
        return ""
    from limits import parse_many
    parse_many(value)
    return value.strip()


def _prompt_seconds(value: str) -> float:
    number = float(value)
    if not 1 <= number <= 30:
        raise ValueError("must be between 1 and 30")
    return number


def _wyoming_uri(value: str) -> str:
    """A tcp:// or unix:// URI as the wyoming package's servers read it, or empty."""
    value = value.strip()
    if not value:
        return ""
    if value.startswith("unix://") and len(value) > len("unix://"):
        return value
    if value.startswith("tcp://"):
        host, _, port = value[len("tcp://"):].rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return value
    raise ValueError("must look like tcp://0.0.0.0:10200 or unix:///run/kyutai-tts/wyoming.sock")


def _optional(value: str) -> str:
    """A string where empty means "none" (e.g. no log file)."""
    return value.strip()


def _setting(env: str, default: Any, parse: Callable[[str], Any] = str, doc: str = "", secret: bool = False) -> Any:
    return field(default=default, repr=not secret, metadata={"env": env, "parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """The service's configuration, read once at start."""

    host: str = _setting("HOST", "0.0.0.0", doc="Address to listen on.")
    port: int = _setting("PORT", 5001, _port, "Port to listen on.")
    device: str = _setting("TTS_DEVICE", "auto", _device,
                           "auto (CUDA when present), cpu, cuda or cuda:N.")
    dsm_model: str = _setting("TTS_DSM_MODEL", "kyutai/tts-1.6b-en_fr",
                              doc="Kyutai DSM TTS checkpoint: Hugging Face repo id or local directory.")
    dsm_voice: str = _setting("TTS_DSM_VOICE", "expresso/ex03-ex01_happy_001_channel1_334s.wav",
                              doc="Default DSM voice: a name in the voice repo or a local .safetensors embedding.")
    dsm_voice_repo: str = _setting("TTS_DSM_VOICE_REPO", "kyutai/tts-voices",
                                   doc="Hugging Face repo the DSM voice names are looked up in.")
    dsm_languages: tuple[str, ...] = _setting("TTS_DSM_LANGUAGES", ("en", "fr"), _language_list,
                                              "Languages the DSM checkpoint speaks.")
    dsm_n_q: int = _setting("TTS_DSM_N_Q", 32, _positive(int),
                            "Audio codebooks generated: fewer is faster, 32 is best quality.")
    dsm_temperature: float = _setting("TTS_DSM_TEMPERATURE", 0.6, _temperature,
                                      "Sampling temperature of the DSM model.")
    dsm_cfg_coef: float = _setting("TTS_DSM_CFG_COEF", 2.0, _positive(float),
                                   "Classifier-free guidance; CFG-distilled models take 1.0 to 4.0 by 0.5.")
    dsm_padding_between: int = _setting("TTS_DSM_PADDING_BETWEEN", 1, _non_negative(int),
                                        "Minimum pause between words, in frames.")
    dsm_dtype: str = _setting("TTS_DSM_DTYPE", "auto", _choice("auto", "bfloat16", "float16", "float32"),
                              "Weights dtype: auto is bfloat16 on CUDA and float32 on CPU.")
    torch_compile: str = _setting("TTS_TORCH_COMPILE", "auto", _choice("auto", "on", "off"),
                                  "torch.compile moshi's hot paths: auto is on with CUDA only.")
    max_batch_size: int = _setting("TTS_MAX_BATCH_SIZE", 8, _positive(int),
                                   "Requests generated together in one batch, per model (DSM and each Pocket TTS language).")
    batch_wait_ms: float = _setting("TTS_BATCH_WAIT_MS", 20.0, _non_negative(float),
                                    "How long an idle worker waits for more requests to batch.")
    realtime_margin: float = _setting("TTS_REALTIME_MARGIN", 1.25, _non_negative(float),
                                      "A new request joins a running batch only while every request in it is predicted to "
                                      "stay this many times faster than real time (from the steps' measured cost); the "
                                      "others wait in arrival order. 0 admits up to TTS_MAX_BATCH_SIZE whatever it costs.")
    max_queue: int = _setting("TTS_MAX_QUEUE", 32, _positive(int),
                              "Requests waiting per engine before new ones get 503.")
    request_timeout: float = _setting("TTS_REQUEST_TIMEOUT", 120.0, _positive(float),
                                      "Seconds a request may wait and run before it fails.")
    max_chars: int = _setting("TTS_MAX_CHARS", 3000, _positive(int),
                              "Longest text accepted; longer is a 413, never cut.")
    max_audio_seconds: float = _setting("TTS_MAX_AUDIO_SECONDS", 120.0, _positive(float),
                                        "Longest audio one request may generate.")
    session_max_chars: int = _setting("TTS_SESSION_MAX_CHARS", 30000, _positive(int),
                                      "Most text one WebSocket session may send, over all its messages.")
    session_slot_share: float = _setting("TTS_SESSION_SLOT_SHARE", 0.5, _fraction,
                                         "Share of each engine's slots WebSocket sessions may hold at once "
                                         "(at least one); the rest stay free for HTTP requests.")
    session_clause_pause: float = _setting("TTS_SESSION_CLAUSE_PAUSE", 0.4, _positive(float),
                                           "Pocket TTS sessions: seconds without new words after which "
                                           "the words so far are spoken as a clause.")
    ws_ping_interval: float = _setting("TTS_WS_PING_INTERVAL", 10.0, _positive(float),
                                       "Seconds between the server's WebSocket pings; no pong by the next "
                                       "ping closes the socket.")
    ws_idle_timeout: float = _setting("TTS_WS_IDLE_TIMEOUT", 30.0, _positive(float),
                                      "A WebSocket session that sends nothing for this long before its end "
                                      "is closed.")
    preload: bool = _setting("TTS_PRELOAD", True, _bool,
                             "Load the models at start instead of on first use.")
    log_level: str = _setting("TTS_LOG_LEVEL", "INFO", _choice("debug", "info", "warning", "error"),
                              "Logging level.")
    default_language: str = _setting("TTS_DEFAULT_LANGUAGE", "es", doc="Language of requests that name none.")
    pocket_languages: tuple[str, ...] = _setting(
        "TTS_POCKET_LANGUAGES", ("es", "de", "it", "pt", "en", "fr"), _language_list,
        "Languages Pocket TTS may serve.")
    routes: dict[str, str] = _setting("TTS_ROUTES", None, _routes,
                                      "Language to engine, e.g. 'en=dsm,es=pocket'; default by device.")
    pocket_config: str = _setting("TTS_POCKET_CONFIG", "",
                                  doc="Pocket TTS YAML config (local path or hf://) for every language; "
                                      "empty uses the package's per-language configs.")
    voice_dir: str = _setting("TTS_VOICE_DIR", "",
                                     doc="Directory of custom voices: WAV for Pocket TTS, .safetensors for DSM.")
    voice_store: str = _setting("TTS_VOICE_STORE", "data/voices",
                                doc="Folder of the voices made with POST /v1/audio/voices (a shared folder lets "
                                    "replicas share them).")
    voice_cloning: bool = _setting("TTS_VOICE_CLONING", True, _bool,
                                   "Accept POST /v1/audio/voices: each Pocket TTS model keeps its Mimi encoder "
                                   "(about 35 MB each); off lets it go once the voices are loaded.")
    voice_keep_recording: bool = _setting("TTS_VOICE_KEEP_RECORDING", False, _bool,
                                          "Keep a created voice's prepared recording (24 kHz WAV) beside its "
                                          "state, so that a Pocket TTS language loaded later can speak it too.")
    voice_max_bytes: int = _setting("TTS_VOICE_MAX_BYTES", 10 * 1024 * 1024, _positive(int),
                                    "Largest voice upload accepted; larger is a 413, before the body is read.")
    voice_max_count: int = _setting("TTS_VOICE_MAX_COUNT", 100, _positive(int),
                                    "Most voices the library holds; another upload is a 409.")
    voice_prompt_seconds: float = _setting("TTS_VOICE_PROMPT_SECONDS", 15.0, _prompt_seconds,
                                           "Seconds of a cleaned recording the voice is made from (at most 30): "
                                           "every request that speaks with it attends over them.")
    voice_encode_threads: int = _setting("TTS_VOICE_ENCODE_THREADS", 1, _positive(int),
                                         "torch threads that make a voice from a recording, beside the workers.")
    pocket_default_voice: str = _setting("TTS_POCKET_VOICE", "",
                                         doc="Default Pocket TTS voice for every language; empty uses each language's own.")
    pocket_config_dir: str = _setting("TTS_POCKET_CONFIG_DIR", "", _optional,
                                      doc="Directory of Pocket TTS configs named <language>.yaml (es.yaml...); "
                                          "a language found there uses it before TTS_POCKET_CONFIG.")
    pocket_quantize: str = _setting("TTS_POCKET_QUANTIZE", "auto", _choice("auto", "on", "off"),
                                    "pocket-tts's own int8 quantization (quantize=True): auto is on with "
                                    "TTS_DEVICE cpu, off with CUDA.")
    pocket_decoder_precision: str = _setting(
        "TTS_POCKET_DECODER_PRECISION", "auto", _choice("auto", "float32", "bfloat16", "int8"),
        "Number format of Pocket TTS's Mimi decoder: auto is float32 (the package's audio up to "
        "rounding). bfloat16 (SEANet convolutions; fast only with AVX512-BF16 or AMX) and int8 (the "
        "decoder transformer's linear layers) are lossy: about 44 dB SNR for bfloat16, an error that a "
        "60 dB-deep pause would not hide; see docs/benchmarks.md.")
    pocket_preload_languages: tuple[str, ...] = _setting(
        "TTS_POCKET_PRELOAD_LANGUAGES", (), _language_list,
        "Pocket TTS languages loaded at start; the others load on their first request. "
        "Empty: TTS_DEFAULT_LANGUAGE and en.")
    pocket_word_heads: dict | None = _setting(
        "TTS_POCKET_WORD_HEADS", None, _word_heads,
        "Flow-model attention heads (layer:head) that time Pocket TTS's words: '3:9 4:2' for every "
        "model, 'es=3:9 4:2;de=off' per language, 'off' for none. Empty: the heads known for the "
        "released checkpoint loaded; a model without any has its word times estimated.")
    pocket_idle_unload: float = _setting("TTS_POCKET_IDLE_UNLOAD", 900.0, _non_negative(float),
                                         "Seconds a Pocket TTS language not preloaded may sit unused before "
                                         "it is unloaded; 0 keeps it.")
    torch_threads: int = _setting("TTS_TORCH_THREADS", 0, _non_negative(int),
                                  "torch threads per operation, set once at start (pocket-tts sets 1 when "
                                  "imported); 0: one per CPU core.")

    api_key: str = _setting("TTS_API_KEY", "", doc="When set, synthesis, voice and metrics endpoints need "
                                                    "'Authorization: Bearer <key>'; /health stays open.",
                            secret=True)
    admin_key: str = _setting("TTS_ADMIN_KEY", "", doc="When set, creating and deleting voices need "
                                                        "'Authorization: Bearer <key>' with this key; "
                                                        "empty: the API key.",
                              secret=True)
    cors_origins: str = _setting("TTS_CORS_ORIGINS", "*",
                                 doc="Origins allowed by CORS: '*' (as the original setup) or a comma-separated list.")
    rate_limit: str = _setting("TTS_RATE_LIMIT", "120/minute;2000/hour", _rate_limit,
                               "Per-client budget shared by /tts, /tts/stream, /v1/audio/speech and WebSocket "
                               "sessions (limits syntax); empty disables it.")
    auth_fail_limit: str = _setting("TTS_AUTH_FAIL_LIMIT", "10/minute", _rate_limit,
                                    "Wrong API keys a client may send; past it every request needing the key is a 429.")
    trust_proxy: int = _setting("TTS_TRUST_PROXY", 0, _non_negative(int),
                                "Reverse proxies in front whose X-Forwarded-For is trusted for the client address: "
                                "1 behind the Vercel proxy or nginx, 0 when clients connect directly.")
    max_body_bytes: int = _setting("TTS_MAX_BODY_BYTES", 262144, _positive(int),
                                   "Largest request body accepted; larger is a 413.")
    clean_text: bool = _setting("TTS_CLEAN_TEXT", True, _bool,
                                "Turn Markdown, emoji, URLs and symbols into speakable text (per request: \"clean\").")
    normalize: bool = _setting("TTS_NORMALIZE", True, _bool,
                               "Read figures, money, dates, times, units and abbreviations aloud as a person "
                               "would, in the request's language (per request: \"normalize\").")
    lexicon: str = _setting("TTS_LEXICON", "", _optional,
                            doc="A pronunciation lexicon: lines of language<TAB>written<TAB>spoken ('*' for every "
                                "language), whole words; checked at start, read again on SIGHUP.")
    cache_bytes: int = _setting("TTS_CACHE_BYTES", 64 * 1024 * 1024, _non_negative(int),
                                "Memory for cached audio, in bytes; 0 disables the cache.")
    job_store: str = _setting("TTS_JOB_STORE", "data/jobs", _optional,
                              doc="Folder of the long-text jobs (POST /v1/audio/jobs): their text, state and finished "
                                  "pieces; a folder replicas share lets any replica answer for a job; empty: jobs off.")
    job_max_chars: int = _setting("TTS_JOB_MAX_CHARS", 500000, _positive(int),
                                  "Longest text one job accepts; longer is a 413.")
    job_max_queued: int = _setting("TTS_JOB_MAX_QUEUED", 20, _positive(int),
                                   "Jobs waiting to start before a new one gets 429.")
    job_store_bytes: int = _setting("TTS_JOB_STORE_BYTES", 10 * 1024 ** 3, _positive(int),
                                    "Most bytes the job store may hold: a new job past it gets 507, a running one "
                                    "fails with the reason.")
    job_ttl: float = _setting("TTS_JOB_TTL", 7 * 24 * 3600.0, _positive(float),
                              "Seconds a finished, failed or cancelled job is kept before it is removed.")
    http_threads: int = _setting("TTS_HTTP_THREADS", 64, _positive(int),
                                 "gunicorn threads for HTTP I/O (the models have their own worker threads).")
    log_file: str = _setting("TTS_LOG_FILE", "tts.log", _optional,
                             doc="Rotating log file (10 MB x 5) besides stdout; empty for stdout only.")
    wyoming_port: int = _setting("TTS_WYOMING_PORT", 0, _port_or_off,
                                 "Wyoming TCP port for Home Assistant (10200 is usual); 0 or empty: off.")
    wyoming_host: str = _setting("TTS_WYOMING_HOST", "", _optional,
                                 doc="Address the Wyoming server listens on; empty: the same as HOST. "
                                     "Keep it on the local network: Wyoming has no authentication.")
    wyoming_uri: str = _setting("TTS_WYOMING_URI", "", _wyoming_uri,
                                "Where the Wyoming server listens, as a URI: tcp://HOST:PORT or "
                                "unix:///path/to/socket (a Home Assistant add-on on the same machine); "
                                "overrides TTS_WYOMING_PORT and TTS_WYOMING_HOST; empty: those two.")
    wyoming_zeroconf: bool = _setting("TTS_WYOMING_ZEROCONF", False, _bool,
                                      "Announce the Wyoming server over mDNS (_wyoming._tcp) for Home Assistant "
                                      "discovery; needs the zeroconf package.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read settings from the environment; a bad value raises ConfigError naming the variable."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            env = spec.metadata["env"]
            if spec.name in overrides:
                continue
            raw = environ.get(env)
            if raw is None or (raw == "" and spec.metadata["parse"] not in (_language_list, _routes, _rate_limit, _optional)):
                continue
            try:
                values[spec.name] = spec.metadata["parse"](raw)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{env}={raw!r} is invalid: {exc}") from None
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.dsm_n_q > 32:
            raise ConfigError(f"TTS_DSM_N_Q={self.dsm_n_q} is invalid: Kyutai DSM models have at most 32 codebooks")

    def resolved_wyoming_uri(self) -> str:
        """Where the Wyoming server listens; empty when it is off."""
        if self.wyoming_uri:
            return self.wyoming_uri
        if not self.wyoming_port:
            return ""
        host = self.wyoming_host or self.host
        return f"tcp://{host}:{self.wyoming_port}"

    def resolved_device(self) -> str:
        """The torch device to use: CUDA when present unless configured otherwise."""
        if self.device != "auto":
            return self.device
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"

    @staticmethod
    def documentation() -> list[tuple[str, str, str]]:
        """(variable, default, meaning) for every setting, for the README table."""
        rows = []
        for spec in fields(Settings):
            default = spec.default
            if isinstance(default, tuple):
                default = ",".join(default)
            rows.append((spec.metadata["env"], "" if default is None else str(default), spec.metadata["doc"]))
        return rows
