import importlib.util
from pathlib import Path

import pytest
import torch
from modeling_stdd.tokenization_stdd import CLIP_CONTEXT_LENGTH, CLIP_VOCAB_SIZE, STDDTokenizer, load_clip_bpe
from transformers import AutoTokenizer, CLIPTokenizer


OPEN_CLIP_TOKENIZER_FILE = Path(importlib.util.find_spec("open_clip").submodule_search_locations[0]) / "tokenizer.py"

TEXTS = [
    "a video of a person dancing.",
    "",
    "Playing Basketball",
    "UPPER CASE AND Mixed Case",
    "punctuation!!! (brackets) [more], {curly}; semi: colon? 'quotes' \"double\" -dash- ...",
    "Don’t stop “believing” – it’s fine…",
    "café naïve résumé crème brûlée Ærøskøbing",
    "ΟΔΟΣ İstanbul straße",
    "ﬁsh &amp; chips &lt;b&gt; &amp;amp;",
    "full-width １２３ ＡＢＣ",
    "mojibake: Ã©tÃ© cafÃ©",
    "numbers 3.14159 1,000,000 2nd 10k 1990s",
    "日本語のテキスト 😀🎉",
    "tab\tnew\nline   many   spaces  ",
    "it's they're we'll I'd you've she'd ''s weird'''quotes",
    "non\u00a0breaking\u200bzero width",
    " ".join(["jumping"] * 60),
    "a person " + ", ".join(f"step {i} precedes step {i + 1}" for i in range(40)),
]


@pytest.fixture(scope="module")
def tokenizer():
    return STDDTokenizer()


@pytest.fixture(scope="module")
def open_clip_tokenize():
    """open_clip's `SimpleTokenizer` (OpenAI CLIP's), loaded from its file: `import open_clip` needs torchvision."""
    spec = importlib.util.spec_from_file_location("open_clip_tokenizer", OPEN_CLIP_TOKENIZER_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SimpleTokenizer()


def test_vocabulary_is_clip_size_with_clip_special_ids(tokenizer):
    vocab, merges = load_clip_bpe()
    assert len(vocab) == len(tokenizer) == CLIP_VOCAB_SIZE
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (49406, 49407, 49407)
    assert tokenizer.model_max_length == CLIP_CONTEXT_LENGTH
    assert merges[0] == ("i", "n")


@pytest.mark.parametrize("text", TEXTS)
def test_ids_equal_openai_clip(tokenizer, open_clip_tokenize, text):
    expected = open_clip_tokenize([text], context_length=CLIP_CONTEXT_LENGTH)[0]
    expected = expected[: int((expected == open_clip_tokenize.eot_token_id).nonzero()[0]) + 1].tolist()
    assert tokenizer(text, truncation=True)["input_ids"] == expected


def test_batch_padded_to_context_length_matches_openai_clip_where_attended(tokenizer, open_clip_tokenize):
    expected = open_clip_tokenize(TEXTS, context_length=CLIP_CONTEXT_LENGTH)
    encoded = tokenizer(TEXTS, padding="max_length", truncation=True, return_tensors="pt")
    assert encoded["input_ids"].shape == (len(TEXTS), CLIP_CONTEXT_LENGTH)
    mask = encoded["attention_mask"].bool()
    assert torch.equal(encoded["input_ids"][mask], expected[mask])
    assert torch.equal(mask, expected != 0)


def test_long_text_is_truncated_to_context_length_and_ends_with_eos(tokenizer):
    ids = tokenizer(TEXTS[-1], truncation=True)["input_ids"]
    assert len(ids) == CLIP_CONTEXT_LENGTH
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id


def test_plain_clip_tokenizer_differs_where_cleaning_matters(tokenizer):
    """The reason this class exists: without ftfy and HTML unescaping, transformers' CLIPTokenizer gives other ids."""
    vocab, merges = load_clip_bpe()
    plain = CLIPTokenizer(vocab=vocab, merges=merges)
    text = "Don’t stop &amp; ﬁsh"
    assert plain(text)["input_ids"] != tokenizer(text)["input_ids"]
    assert tokenizer(text)["input_ids"] == tokenizer("don't stop & fish")["input_ids"]


def test_save_and_reload_keeps_ids(tokenizer, tmp_path):
    import modeling_stdd  # noqa: F401  (registers STDDTokenizer with AutoTokenizer)

    tokenizer.save_pretrained(tmp_path)
    for reloaded in (STDDTokenizer.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)):
        assert isinstance(reloaded, STDDTokenizer)
        assert reloaded(TEXTS, truncation=True)["input_ids"] == tokenizer(TEXTS, truncation=True)["input_ids"]


def test_decode_round_trips_cleaned_text(tokenizer):
    ids = tokenizer("Hello, World!")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "hello , world !"
