"""
CLIP's text tokenizer, built offline: no download, token ids identical to OpenAI CLIP's for any text.

The BPE merges (`bpe_simple_vocab_16e6.txt.gz`, next to this file) are the ones OpenAI released with CLIP, as
redistributed in the `open-clip-torch` wheel under the MIT license (see `LICENSE.open_clip` next to this file).
"""

import gzip
import html
from functools import lru_cache
from pathlib import Path

import ftfy
from transformers import AutoTokenizer, CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

from .configuration_stdd import STDDConfig


CLIP_BPE_FILE = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
# CLIP's vocabulary has 49408 entries: 256 byte symbols, the same 256 ending a word ("</w>"), the merges, 2 specials.
CLIP_VOCAB_SIZE = 49408
CLIP_NUM_MERGES = CLIP_VOCAB_SIZE - 2 * 256 - 2
CLIP_CONTEXT_LENGTH = 77
CLIP_BOS_TOKEN = "<|startoftext|>"
CLIP_EOS_TOKEN = "<|endoftext|>"


@lru_cache(maxsize=1)
def load_clip_bpe(bpe_file: str | Path = CLIP_BPE_FILE) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """
    Read CLIP's vocabulary and merges from its gzipped merges file.

    The file holds a version line and then one merge per line ("i n"); CLIP uses the first `CLIP_NUM_MERGES` of
    them. Token ids follow CLIP's order: byte symbols, byte symbols ending a word, one token per merge, then the
    start and end of text tokens.
    """
    with gzip.open(bpe_file, "rt", encoding="utf-8") as file:
        lines = file.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 1 + CLIP_NUM_MERGES]]
    if len(merges) != CLIP_NUM_MERGES or any(len(merge) != 2 for merge in merges):
        raise ValueError(f"{bpe_file}: expected {CLIP_NUM_MERGES} merges of two symbols each after the version line.")
    byte_symbols = list(bytes_to_unicode().values())
    tokens = [
        *byte_symbols,
        *(symbol + "</w>" for symbol in byte_symbols),
        *("".join(merge) for merge in merges),
        CLIP_BOS_TOKEN,
        CLIP_EOS_TOKEN,
    ]
    return {token: index for index, token in enumerate(tokens)}, merges


def clean_text(text: str) -> str:
    """
    Clean `text` the way OpenAI CLIP does before tokenizing: repair Unicode with ftfy (mojibake, curly quotes,
    ligatures, full-width forms), unescape HTML entities twice, collapse whitespace and lower-case.
    """
    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split()).lower()


def _clean_texts(texts):
    """`clean_text` on a string, or on every string of a (nested) list or tuple of strings."""
    if isinstance(texts, str):
        return clean_text(texts)
    if isinstance(texts, (list, tuple)):
        return type(texts)(_clean_texts(text) for text in texts)
    return texts


class STDDTokenizer(CLIPTokenizer):
    r"""
    CLIP's tokenizer with OpenAI CLIP's exact text cleaning, buildable without any download.

    [`CLIPTokenizer`] alone skips two steps of OpenAI's tokenizer: ftfy's Unicode repair and HTML unescaping, so
    texts with, for example, curly quotes, ligatures or `&amp;` get other ids than the ones CLIP was trained on.
    This class runs [`clean_text`] on raw text before encoding; token ids then equal OpenAI CLIP's for any text.
    Pre-tokenized input (`is_split_into_words=True`) is encoded as given.

    Called without `vocab` and `merges`, it builds CLIP's vocabulary from the merges file bundled with this
    package. `model_max_length` defaults to CLIP's context length, 77: with `truncation=True` a long text keeps
    its first 75 tokens between the start and end of text tokens, as OpenAI's `clip.tokenize` does.

    Example:

    ```python
    >>> from modeling_stdd import STDDTokenizer
    >>> tokenizer = STDDTokenizer()
    >>> tokenizer("a video of a person dancing.")["input_ids"]
    [49406, 320, 1455, 539, 320, 2533, 6226, 269, 49407]
    ```
    """

    def __init__(self, vocab: dict[str, int] | None = None, merges: list | None = None, **kwargs):
        if vocab is None and merges is None:
            vocab, merges = load_clip_bpe()
        kwargs.setdefault("model_max_length", CLIP_CONTEXT_LENGTH)
        super().__init__(vocab=vocab, merges=merges, **kwargs)

    def _encode_plus(self, text, text_pair=None, is_split_into_words: bool = False, **kwargs):
        if not is_split_into_words:
            text, text_pair = _clean_texts(text), _clean_texts(text_pair)
        return super()._encode_plus(text, text_pair, is_split_into_words=is_split_into_words, **kwargs)


AutoTokenizer.register(STDDConfig, tokenizer_class=STDDTokenizer)

__all__ = ["STDDTokenizer", "clean_text", "load_clip_bpe"]
