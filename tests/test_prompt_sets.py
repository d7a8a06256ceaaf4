"""Prompt sets: resolving a label-text source, each label's prompts, the encoded set and stored prompt embeddings."""

import logging

import pytest
import torch
from safetensors.torch import save_file

from modeling_stdd import STDDModel, STDDTokenizer
from modeling_stdd.askg import DEFAULT_TEMPLATES, LabelTexts
from modeling_stdd.prompt_sets_stdd import (
    LabelTextsNotFoundError,
    PromptSet,
    encode_prompt_set,
    label_prompts,
    prompts_digest,
    read_prompt_embeddings,
    resolve_label_texts,
    save_prompt_embeddings,
)


TEXTS = {"running": ["a person running.", "someone jogging."], "clapping": ["hands clapping."]}


@pytest.fixture
def model(tiny_clip_dir):
    return STDDModel.from_pretrained(tiny_clip_dir).eval()


def test_label_prompts_use_the_label_texts_then_the_template(caplog):
    with caplog.at_level(logging.WARNING):
        prompts = label_prompts(["clapping", "waving"], "a clip of {}.", TEXTS)
    assert prompts == {"clapping": ["hands clapping."], "waving": ["a clip of waving."]}
    assert "no prompts for ['waving']" in caplog.text
    assert label_prompts(None, label_texts=LabelTexts(TEXTS)) == TEXTS
    assert label_prompts("a, b", "{} it.") == {"a": ["a it."], "b": ["b it."]}


def test_a_prompt_set_groups_prompts_by_label_only_with_label_texts():
    text_embeds = torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]])
    grouped = PromptSet.from_label_prompts(TEXTS, text_embeds, grouped=True)
    assert grouped.labels == ("running", "clapping") and grouped.num_classes == 2
    assert grouped.prompts == ("a person running.", "someone jogging.", "hands clapping.")
    assert grouped.prompt_class_ids.tolist() == [0, 0, 1]
    torch.testing.assert_close(grouped.text_embeds, torch.tensor([[0.6, 0.8], [0.0, 1.0], [1.0, 0.0]]))
    plain = PromptSet.from_label_prompts({"a": ["a."], "b": ["b."]}, text_embeds[:2], grouped=False)
    assert plain.prompt_class_ids is None
    with pytest.raises(ValueError, match="one per label"):
        PromptSet.from_label_prompts(TEXTS, text_embeds, grouped=False)
    with pytest.raises(ValueError, match=r"shape \(2, 2\); expected \(3, projection_dim\)"):
        PromptSet.from_label_prompts(TEXTS, text_embeds[:2], grouped=True)


def test_the_encoded_form_is_the_text_towers_output_normalized(model):
    prompt_set = encode_prompt_set(model, STDDTokenizer(), TEXTS, grouped=True, batch_size=2)
    tokenizer = STDDTokenizer()
    with torch.no_grad():
        raw = model.get_text_features(**tokenizer(list(prompt_set.prompts), padding=True, return_tensors="pt"))
    expected = raw.pooler_output / raw.pooler_output.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(prompt_set.text_embeds, expected, atol=1e-6, rtol=1e-5)
    assert prompt_set.text_embeds.dtype == torch.float32


def test_stored_embeddings_are_normalized_and_old_raw_files_read_the_same(tmp_path):
    prompts = ["a.", "b."]
    raw = torch.tensor([[3.0, 4.0], [0.0, -5.0]])
    normalized = torch.tensor([[0.6, 0.8], [0.0, -1.0]])
    stored = save_prompt_embeddings(tmp_path / "new.json", prompts, raw)
    old = tmp_path / "old.safetensors"  # as exports wrote them before: the raw outputs
    save_file({"text_embeds": raw}, old, metadata={"prompts_sha256": prompts_digest(prompts)})
    for path in (stored, old):
        torch.testing.assert_close(read_prompt_embeddings(path, prompts, projection_dim=2), normalized)


def test_one_resolver_for_objects_files_lists_and_shipped_names(tmp_path):
    texts = LabelTexts(TEXTS, source="mine")
    assert resolve_label_texts(texts) == (texts, None)
    path = texts.save(tmp_path / "mine.json")
    embeddings = save_prompt_embeddings(path, texts.flatten()[0], torch.randn(3, 4))
    assert resolve_label_texts(path) == (texts, str(embeddings))  # one file keeps its own source and templates
    merged, embeddings_file = resolve_label_texts([path, LabelTexts({"waving": ["waving."]}).save(tmp_path / "w.json")])
    assert merged.labels == ["running", "clapping", "waving"] and embeddings_file is None
    shipped, _ = resolve_label_texts("hmdb51")
    assert shipped == LabelTexts.for_dataset("hmdb51") and shipped.templates == list(DEFAULT_TEMPLATES)
    assert resolve_label_texts("hmdb51", templates=["{}."])[0].templates == ["{}."]


def test_an_unknown_source_is_a_missing_file_and_a_bad_argument(tmp_path):
    with pytest.raises(LabelTextsNotFoundError, match="Label-texts file not found: .*absent.json"):
        resolve_label_texts(tmp_path / "absent.json")
    with pytest.raises(FileNotFoundError, match=r"'kinetics': no such file, and not one of the shipped datasets"):
        resolve_label_texts("kinetics")
    (tmp_path / "repo").mkdir()
    with pytest.raises(ValueError, match=r"label_texts/kinetics\.json in .*repo"):
        resolve_label_texts(["kinetics"], model_repo=str(tmp_path / "repo"))
    with pytest.raises(ValueError, match="templates= builds prompt sets from ASKG YAML files"):
        resolve_label_texts(TEXTS, templates=["{}."])
