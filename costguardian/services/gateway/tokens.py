"""Counting a request's prompt tokens before it is forwarded (for budget
admission's estimate, services.gateway.admission).

Every string the request carries that a provider turns into prompt tokens
(messages, system, instructions, tools and their schemas, response formats;
JSON keys too) is counted, plus a per-message overhead; request parameters
(model, temperature, max_tokens, metadata …) are not. Images, audio and files
count a fixed MEDIA_TOKENS each, never their base64 data.

OpenAI models (provider openai or azure) are counted with tiktoken, in the
model's own encoding (o200k_base for gpt-4o, gpt-4.1, gpt-5 and the o-series,
cl100k_base for gpt-4 and gpt-3.5; a name tiktoken does not know counts in
o200k_base). tiktoken would download its encoding files on first use, which
production and CI cannot do: the files come from the `bpe-openai` package,
which ships them, and are checked against the SHA-256 that tiktoken itself
publishes before use. Nothing here reaches the network. Loading an encoding
takes about a second, so it loads in the background on the first call that
needs it, and until then (and for good, should the files be missing or not
match: logged) OpenAI models are estimated like the others, below.

Every other provider (Anthropic, Google, …: their tokenizers are not public)
is estimated as ceil(UTF-8 bytes / 3) tokens per string. Byte-pair tokenizers
give English prose about 4 characters a token and CJK text about one
character (3 bytes) a token, so this over-counts ordinary text; it can
under-count text that tokenizes worse than a token per 3 bytes (random
identifiers, base64 pasted as text, some emoji): at worst one token per byte,
3× the estimate. docs/ARCHITECTURE.md "Gateway admission" states what that
means for a budget.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import threading
import time
import types
from importlib import metadata

log = logging.getLogger(__name__)

BYTES_PER_TOKEN = 3
PER_MESSAGE_TOKENS = 4  # role and separators around each message (OpenAI's chat format uses 3–4)
PER_REQUEST_TOKENS = 3  # the reply's priming
IMAGE_TOKENS = 3_000  # an image part: a high-detail image is ≤ ~1,600 tokens on Anthropic, ≤ ~2,700 on OpenAI
MEDIA_TOKENS = 2_000  # at least, for an audio or file part; more when its inline data is larger (bytes / 3)

# Keys whose values are request parameters, not prompt text.
PARAMETER_KEYS = frozenset({
    "model", "max_tokens", "max_completion_tokens", "max_output_tokens", "temperature", "top_p", "top_k", "n",
    "stream", "stream_options", "stop", "stop_sequences", "presence_penalty", "frequency_penalty", "logit_bias",
    "logprobs", "top_logprobs", "seed", "user", "metadata", "service_tier", "store", "parallel_tool_calls",
    "modalities", "reasoning_effort", "reasoning", "thinking", "previous_response_id", "background",
    "truncation", "include", "prompt_cache_key", "safety_identifier", "cache_control", "container", "verbosity",
})
MESSAGE_LISTS = ("messages", "input")
IMAGE_TYPES = frozenset({"image", "image_url", "input_image"})
MEDIA_TYPES = frozenset({"input_audio", "audio", "document", "file", "input_file"})


def text_tokens(text: str) -> int:
    """ceil(UTF-8 bytes / 3)."""
    return -(-len(text.encode("utf-8", "surrogatepass")) // BYTES_PER_TOKEN)


def _string_bytes(value, depth: int = 0) -> int:
    if depth > 16:
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_string_bytes(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_string_bytes(v, depth + 1) for v in value)
    return 0


def _walk(value, texts: list[str], counts: list[int], depth: int = 0) -> None:
    """Collect prompt strings (dict keys included: tool schemas are prompt
    text) into `texts`; add the tokens of media parts to counts[0]."""
    if depth > 64:  # absurdly deep: count what is left as its JSON text
        try:
            texts.append(json.dumps(value, ensure_ascii=False))
        except (TypeError, ValueError, RecursionError):
            pass
        return
    if isinstance(value, str):
        texts.append(value)
    elif isinstance(value, dict):
        kind = value.get("type")
        if isinstance(kind, str) and kind in IMAGE_TYPES:
            counts[0] += IMAGE_TOKENS
            return
        if isinstance(kind, str) and kind in MEDIA_TYPES:  # its inline data (base64 or text) by size
            counts[0] += max(MEDIA_TOKENS, -(-_string_bytes(value) // BYTES_PER_TOKEN))
            return
        for key, item in value.items():
            if depth == 0 and key in PARAMETER_KEYS:
                continue
            if key == "cache_control":
                continue
            if isinstance(key, str):
                texts.append(key)
            _walk(item, texts, counts, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _walk(item, texts, counts, depth + 1)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        texts.append(str(value))


def _messages(body: dict) -> int:
    total = 0
    for key in MESSAGE_LISTS:
        value = body.get(key)
        if isinstance(value, list):
            total += len(value)
        elif isinstance(value, str):
            total += 1
    if body.get("system"):
        total += 1
    return total


def prompt_text(body: dict) -> tuple[list[str], int]:
    """(the prompt's strings, the tokens of its media parts)."""
    texts: list[str] = []
    counts = [0]
    _walk(body if isinstance(body, dict) else {}, texts, counts)
    return texts, counts[0]


# --- tiktoken, offline -----------------------------------------------------------------

TIKTOKEN_PROVIDERS = frozenset({"openai", "azure"})
DEFAULT_ENCODING = "o200k_base"
OFFLINE_FILES = {"o200k_base": "o200k_base.tiktoken.gz", "cl100k_base": "cl100k_base.tiktoken.gz"}
_encodings: dict[str, object] = {}
_encodings_lock = threading.Lock()


def _bundled_ranks(name: str):
    """A loader for tiktoken's encoding constructors: the ranks from the file
    bpe-openai ships, verified against the hash tiktoken's constructor passes."""
    def load(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        # Located through the distribution's metadata: importing bpe_openai would load its own tokenizer.
        path = metadata.distribution("bpe-openai").locate_file(f"bpe_openai/data/{OFFLINE_FILES[name]}")
        data = gzip.decompress(path.read_bytes())
        digest = hashlib.sha256(data).hexdigest()
        if expected_hash is None or digest != expected_hash:
            raise ValueError(f"the bundled {name} file has SHA-256 {digest}, tiktoken expects {expected_hash}")
        ranks = {}
        for number, line in enumerate(data.splitlines()):
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
            if number % 2000 == 0:
                time.sleep(0)  # loading in the background: let request threads have the GIL
        return ranks
    return load


def encoding(name: str):
    """tiktoken's encoding `name` built from the bundled file (cached), or
    None when it cannot be had offline. tiktoken's own constructor supplies
    the pattern and special tokens; only its file loader is replaced."""
    if name in _encodings:
        return _encodings[name]
    with _encodings_lock:
        if name in _encodings:
            return _encodings[name]
        result = None
        try:
            import tiktoken
            from tiktoken_ext import openai_public

            constructor = getattr(openai_public, name)
            offline = types.FunctionType(constructor.__code__,
                                         {**constructor.__globals__, "load_tiktoken_bpe": _bundled_ranks(name)},
                                         constructor.__name__, constructor.__defaults__, constructor.__closure__)
            result = tiktoken.Encoding(**offline())
        except Exception:  # missing package, renamed file, wrong hash: estimate instead
            log.exception("tiktoken encoding %s is unavailable offline; estimating OpenAI prompt tokens by bytes", name)
        _encodings[name] = result
        return result


def encoding_name(model: str) -> str:
    try:
        from tiktoken.model import encoding_name_for_model

        name = encoding_name_for_model(model)
    except (ImportError, KeyError):
        return DEFAULT_ENCODING
    return name if name in OFFLINE_FILES else DEFAULT_ENCODING  # o200k_harmony counts text as o200k_base


_loaders: dict[str, threading.Thread] = {}


def loaded_encoding(name: str):
    """The encoding if it is loaded; else None, and it starts loading in the
    background (about a second): a call never waits for it, the first calls
    of a process are estimated by bytes instead."""
    if name in _encodings:
        return _encodings[name]
    with _encodings_lock:
        loader = _loaders.get(name)
        if loader is not None and loader.is_alive():
            return None
        loader = _loaders[name] = threading.Thread(target=encoding, args=(name,), name=f"tiktoken-{name}",
                                                   daemon=True)
    loader.start()
    return None


def counter_for(provider: str, model: str):
    """How a string's tokens are counted for this provider and model."""
    if provider in TIKTOKEN_PROVIDERS:
        name = encoding_name(model or "")
        enc = loaded_encoding(name)
        if enc is not None:
            return lambda text: len(enc.encode_ordinary(text))
    return text_tokens


def input_tokens(provider: str, model: str, body: dict, count=None) -> int:
    """The estimated prompt tokens of a request body."""
    if not isinstance(body, dict):
        return PER_REQUEST_TOKENS
    count = count or counter_for(provider, model)
    texts, media = prompt_text(body)
    return (sum(count(t) for t in texts) + media
            + _messages(body) * PER_MESSAGE_TOKENS + PER_REQUEST_TOKENS)
