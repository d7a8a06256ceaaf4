"""
Generating ASKG entries and clause lists with a language model (both stages of STDD's text augmentation).

Stage 1 asks the model for the graph of one class, stage 2 for its three clause lists (or verbalizes the graph by
rules, `clause_stage="rules"`). Each answer is parsed and validated; when it has problems the model sees them
once and may repair its answer. Finished classes are appended to the output file one by one (each in one durable
write), and a new run skips the classes already there, so an interrupted run loses nothing.

Backends implement `ChatBackend.complete(messages) -> str`: `OpenAIChatBackend` talks to any server with the
OpenAI chat-completions protocol, `TransformersChatBackend` runs a local transformers causal language model.
"""

import csv
import dataclasses
import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .schema import ATTRIBUTE_BY_YAML_FIELD, CLAUSE_FIELDS, GRAPH_FIELDS, ASKGEntry, Issue, dump_entries
from .schema import entry_from_dict, read_askg_file, validate_entry
from .verbalizer import verbalize_entries
from ..file_utils import append_text_durably, read_json_file, read_text_file


logger = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """The language model could not be reached or gave no usable response (after retries)."""


class GenerationError(RuntimeError):
    """The model's answer for one class stayed invalid after the repair round."""


class RefusedRequest(BackendError):
    """
    The server refused one request (HTTP 400, 413 or 422, such as a prompt over the context length) or answered it
    with no text: that class fails, and other classes may still work.
    """


# ----------------------------------------------------------------------------------------------------------
# Backends


class _Retryable(Exception):
    """A failed request that may succeed when tried again."""


class ChatBackend(ABC):
    """A chat language model: a list of `{"role": ..., "content": ...}` messages in, the answer text out."""

    @abstractmethod
    def complete(self, messages: list[dict[str, str]]) -> str: ...


class OpenAIChatBackend(ChatBackend):
    """
    Any server speaking the OpenAI chat-completions protocol (`POST {base_url}/chat/completions`): OpenAI,
    vLLM, llama.cpp, Ollama, text-generation-inference... `model` and `base_url` default to the environment
    variables OPENAI_MODEL and OPENAI_BASE_URL, and the key is read from the environment variable
    `api_key_env` (OPENAI_API_KEY; servers that need no key accept its absence). Connection errors, timeouts,
    HTTP 429 and 5xx are retried `max_retries` times, waiting `backoff_seconds * 2**attempt` in between.
    """

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_seconds: float = 120.0,
        max_retries: int = 3,
        backoff_seconds: float = 2.0,
        temperature: float = 0.0,
        max_tokens: int = 2048,
    ):
        self.model = model or os.environ.get("OPENAI_MODEL")
        if not self.model:
            raise ValueError("no model given: pass model=... (--model) or set OPENAI_MODEL")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = os.environ.get(api_key_env)
        if timeout_seconds <= 0 or max_retries < 0 or backoff_seconds < 0:
            raise ValueError("timeout_seconds must be positive, max_retries and backoff_seconds not negative")
        self.timeout_seconds, self.max_retries, self.backoff_seconds = timeout_seconds, max_retries, backoff_seconds
        self.temperature, self.max_tokens = temperature, max_tokens

    def _request(self, messages: list[dict[str, str]]) -> urllib.request.Request:
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")

    def _post_once(self, messages: list[dict[str, str]]) -> dict:
        """One request; raises `_Retryable` for failures worth another try and `BackendError` for the others."""
        try:
            with urllib.request.urlopen(self._request(messages), timeout=self.timeout_seconds) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read()[:500].decode(errors="replace")
            if error.code == 429 or error.code >= 500:
                raise _Retryable(f"HTTP {error.code} from {self.url}: {detail}") from error
            refused = RefusedRequest if error.code in (400, 413, 422) else BackendError
            raise refused(f"HTTP {error.code} from {self.url}: {detail}") from error
        except (OSError, http.client.HTTPException) as error:  # unreachable, timed out, or cut off mid-response
            raise _Retryable(f"{self.url}: {error!r}") from error
        try:
            return json.loads(payload)
        except ValueError as error:  # not JSON, or bytes in no encoding JSON can have (UnicodeDecodeError)
            raise _Retryable(f"{self.url} sent a response that is not JSON: {payload[:200]!r}") from error

    def complete(self, messages: list[dict[str, str]]) -> str:
        for attempt in range(self.max_retries + 1):
            try:
                return self._content(self._post_once(messages))
            except _Retryable as error:
                if attempt == self.max_retries:
                    raise BackendError(f"gave up after {attempt + 1} attempts: {error}") from error
                delay = self.backoff_seconds * 2**attempt
                logger.warning("%s; retrying in %.1f s", error, delay)
                time.sleep(delay)

    def _content(self, payload: dict) -> str:
        """The answer text of a chat-completions response."""
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as error:
            raise BackendError(f"{self.url}: no choices[0].message.content in {str(payload)[:300]}") from error
        if not isinstance(content, str):
            raise RefusedRequest(f"{self.url}: message content is {type(content).__name__}, not text")
        return content


class TransformersChatBackend(ChatBackend):
    """
    A local transformers causal language model with a chat template, decoding greedily (deterministic).
    Build it from loaded objects, or with `from_pretrained(model_name_or_path)`.
    """

    def __init__(self, model, tokenizer, max_new_tokens: int = 1024):
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("the tokenizer has no chat template; use an instruction-tuned (chat) model")
        self.model, self.tokenizer, self.max_new_tokens = model.eval(), tokenizer, max_new_tokens
        pad_token_id = tokenizer.pad_token_id
        self.pad_token_id = tokenizer.eos_token_id if pad_token_id is None else pad_token_id

    @classmethod
    def from_pretrained(cls, model_name_or_path: str, max_new_tokens: int = 1024, **model_kwargs):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
        model = AutoModelForCausalLM.from_pretrained(model_name_or_path, **model_kwargs)
        return cls(model, tokenizer, max_new_tokens=max_new_tokens)

    def complete(self, messages: list[dict[str, str]]) -> str:
        import torch

        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self.model.device)
        with torch.no_grad():
            output_ids = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=self.pad_token_id,
            )
        prompt_length = inputs["input_ids"].shape[1]
        return self.tokenizer.decode(output_ids[0, prompt_length:], skip_special_tokens=True)


# ----------------------------------------------------------------------------------------------------------
# Prompts (ours), each with a one-shot example

EXAMPLE_LABEL = "shuffling cards"
EXAMPLE_ENTRY = ASKGEntry(
    label=EXAMPLE_LABEL,
    objects=["deck of cards", "card edges", "left hand", "right hand", "thumbs", "table"],
    object_triples=[
        "<right hand, cuts, deck of cards>",
        "<thumbs, bend back, card edges>",
        "<deck of cards, rests on, table>",
        "<left hand, squares up, deck of cards>",
    ],
    action_object_triples=[
        "<shuffling cards, mixes, deck of cards>",
        "<shuffling cards, is done with, thumbs>",
        "<shuffling cards, happens over, table>",
        "<shuffling cards, is guided by, right hand>",
    ],
    sub_actions=[
        "cutting the deck into two halves",
        "bending the card edges with the thumbs",
        "riffling the halves together",
        "bridging the cards back into one deck",
        "squaring up the deck",
    ],
    sub_action_triples=[
        "<shuffling cards, starts with, cutting the deck into two halves>",
        "<cutting the deck into two halves, precedes, bending the card edges with the thumbs>",
        "<bending the card edges with the thumbs, precedes, riffling the halves together>",
        "<riffling the halves together, precedes, bridging the cards back into one deck>",
        "<bridging the cards back into one deck, precedes, squaring up the deck>",
    ],
    xprompt_oo=[
        "where the right hand cuts the deck of cards",
        "where the thumbs bend back the card edges",
        "where the deck of cards rests on a table",
        "where the left hand squares up the deck",
    ],
    xprompt_ao=[
        "which mixes a deck of cards",
        "which is done with both thumbs",
        "which happens over a table",
        "which is guided by the right hand",
    ],
    xprompt_aa=[
        "starting with cutting the deck into two halves",
        "where bending the card edges with the thumbs precedes riffling the halves together",
        "where riffling the halves together comes before bridging the cards back into one deck",
        "ending with squaring up the deck",
    ],
)

GRAPH_INSTRUCTIONS = """\
You build an Action Semantic Knowledge Graph for one human action class, as a camera would see it. Answer with \
one YAML mapping and nothing else, with these fields:
label: the class name exactly as given
obj_en_li: 5 to 10 distinct things visible in a typical clip (objects, body parts, surfaces, places)
obj_rel_triples: 3 to 10 relations between two of those things
act_obj_triples: 3 to 10 triples <LABEL, relation, object>, LABEL being the class name, the object from obj_en_li
sub_act_en_li: 3 to 8 distinct sub-actions in the order they happen, each a short -ing phrase
act_rel_triples: <LABEL, starts with, first sub-action>, then <sub-action, precedes, next sub-action> for each \
consecutive pair, spelled exactly as in sub_act_en_li
Every triple is written <part one, part two, part three>: three non-empty parts separated by ", " and no comma, \
"<" or ">" inside a part. Prefer concrete, visual details that tell this class apart from similar actions."""

CLAUSE_INSTRUCTIONS = """\
You turn the Action Semantic Knowledge Graph of one action class into three lists of short English clauses \
that can follow the class name in a sentence. Answer with one YAML mapping and nothing else, with these fields:
xprompt_oo: one clause per obj_rel_triples item, each starting with "where"
xprompt_ao: one clause per act_obj_triples item, each starting with "which"
xprompt_aa: from the sub-action order: "starting with ...", then "where X precedes Y" or "where X comes before Y", \
and "ending with ..."
Each list has 3 to 10 grammatical, distinct clauses without a final period."""


def _yaml(entry: ASKGEntry) -> str:
    return dump_entries({entry.label: entry})


def graph_messages(label: str) -> list[dict[str, str]]:
    """Stage 1 chat: the instructions, the example class and its graph, then the class `label`."""
    return [
        {"role": "system", "content": GRAPH_INSTRUCTIONS},
        {"role": "user", "content": f"Action class: {EXAMPLE_LABEL}"},
        {"role": "assistant", "content": _yaml(EXAMPLE_ENTRY.subset(GRAPH_FIELDS))},
        {"role": "user", "content": f"Action class: {label}"},
    ]


def clause_messages(graph: ASKGEntry) -> list[dict[str, str]]:
    """Stage 2 chat: the instructions, the example graph and its clauses, then `graph`."""
    return [
        {"role": "system", "content": CLAUSE_INSTRUCTIONS},
        {"role": "user", "content": _yaml(EXAMPLE_ENTRY.subset(GRAPH_FIELDS))},
        {"role": "assistant", "content": _yaml(EXAMPLE_ENTRY.subset(CLAUSE_FIELDS))},
        {"role": "user", "content": _yaml(graph.subset(GRAPH_FIELDS))},
    ]


def repair_message(issues: Sequence[Issue]) -> dict[str, str]:
    """The follow-up turn that lists the problems of the model's previous answer."""
    listed = "\n".join(f"- {issue.field}: {issue.message}" for issue in issues)
    return {
        "role": "user",
        "content": f"Your answer has these problems:\n{listed}\nAnswer again with the corrected YAML only.",
    }


# ----------------------------------------------------------------------------------------------------------
# Parsing and checking answers


def _strip_code_fence(answer: str) -> str:
    """The content of the first ``` fenced block of `answer`, or all of it when there is none."""
    if "```" not in answer:
        return answer
    after_fence = answer.split("```", 1)[1]
    body = after_fence.split("\n", 1)[1] if "\n" in after_fence else after_fence  # drop the "yaml" info string
    return body.split("```", 1)[0]


def parse_answer(answer: str, label: str) -> ASKGEntry:
    """
    Read a model's YAML answer as the entry of class `label`: a mapping from the class name to the fields (the
    file format), or the fields at the top level. A missing `label` field means `label`. Raises `ValueError`.
    """
    try:
        data = yaml.safe_load(_strip_code_fence(answer))
    except yaml.YAMLError as error:
        raise ValueError(f"the answer is not valid YAML: {error}") from error
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), dict):
        data = next(iter(data.values()))
    if not isinstance(data, dict):
        raise ValueError("the answer is not a YAML mapping of fields")
    return entry_from_dict(label, {"label": label, **data}, source="answer")


def answer_problems(entry: ASKGEntry, label: str, fields: Sequence[str]) -> list[Issue]:
    """The issues of `entry` in `fields` (YAML names) and its label; a field the answer lacks is an error."""
    present = entry.to_yaml_dict()
    missing = [Issue(label, name, "is missing", "error") for name in fields if name not in present]
    wanted = {"label", *fields}
    return missing + [issue for issue in validate_entry(label, entry) if issue.field in wanted]


# ----------------------------------------------------------------------------------------------------------
# Generation


@dataclass
class GenerationResult:
    """What one `ASKGGenerator.run` did: classes written, skipped (already in the output) and failed (why)."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class ASKGGenerator:
    """
    Both stages for a list of class names with a `ChatBackend`. `clause_stage` is "llm" (the model writes the
    clauses) or "rules" (the rule-based verbalizer does).
    """

    def __init__(self, backend: ChatBackend, clause_stage: str = "llm"):
        if clause_stage not in ("llm", "rules"):
            raise ValueError(f"clause_stage must be 'llm' or 'rules', got {clause_stage!r}")
        self.backend, self.clause_stage = backend, clause_stage

    def _check(self, answer: str, label: str, fields: Sequence[str], base: ASKGEntry | None):
        """The answer as an entry (its `fields` put into `base` if given) and its issues; None if unparseable."""
        try:
            parsed = parse_answer(answer, label)
        except ValueError as error:
            return None, [Issue(label, "answer", str(error), "error")]
        entry = parsed if base is None else _with_fields(base, parsed, fields)
        return entry, answer_problems(entry, label, fields)

    def _ask(self, messages: list[dict[str, str]], label: str, fields: Sequence[str], base: ASKGEntry | None):
        """
        Ask for `fields` of class `label`; when the answer has problems, list them to the model and ask once
        more. Returns the entry; raises `GenerationError` when the second answer still has errors.
        """
        answer = self.backend.complete(messages)
        first_entry, first_issues = self._check(answer, label, fields, base)
        if not first_issues:
            return first_entry
        repair = messages + [{"role": "assistant", "content": answer}, repair_message(first_issues)]
        entry, issues = self._check(self.backend.complete(repair), label, fields, base)
        if (entry is None or _has_errors(issues)) and first_entry is not None and not _has_errors(first_issues):
            entry, issues = first_entry, first_issues  # a worse repair does not throw away a usable first answer
        problems = "; ".join(f"{issue.field}: {issue.message}" for issue in issues)
        if entry is None or _has_errors(issues):
            raise GenerationError(f"{label!r}: the answer is still invalid after one repair: {problems}")
        if issues:
            logger.warning("%r kept with warnings: %s", label, problems)
        return entry

    def generate_entry(self, label: str) -> ASKGEntry:
        """The graph and the clause lists of class `label`."""
        graph = self._ask(graph_messages(label), label, GRAPH_FIELDS, base=None)
        graph = graph.subset(GRAPH_FIELDS)
        if self.clause_stage == "rules":
            return verbalize_entries({label: graph})[label]
        return self._ask(clause_messages(graph), label, CLAUSE_FIELDS, base=graph)

    def run(self, labels: Iterable[str], output_path: str | os.PathLike) -> GenerationResult:
        """
        Generate every class of `labels` not yet in `output_path`, appending each finished class to the file in
        one durable write (10,000 classes cost 10,000 small appends, not 10,000 rewrites of a growing file). A
        class whose answers stay invalid, or whose request the server refuses, is recorded in `failed` and the
        run goes on; any other `BackendError` (server unreachable after retries, a bad URL or key) stops it, naming
        the class, and the next run resumes after the last finished class.
        """
        output_path = Path(output_path)
        done = _read_existing(output_path)
        result = GenerationResult()
        for label in labels:
            if label in done:
                result.skipped.append(label)
                continue
            try:
                done[label] = self.generate_entry(label)
            except (GenerationError, RefusedRequest) as error:
                message = str(error) if isinstance(error, GenerationError) else f"{label!r}: {error}"
                logger.error("%s", message)
                result.failed[label] = message
                continue
            except BackendError as error:
                raise BackendError(f"while generating {label!r}: {error}") from error
            _append_entry(output_path, label, done[label])
            result.written.append(label)
            logger.info("wrote %r (%d classes in %s)", label, len(done), output_path)
        return result


def _has_errors(issues: Sequence[Issue]) -> bool:
    return any(issue.severity == "error" for issue in issues)


def _with_fields(base: ASKGEntry, answer: ASKGEntry, fields: Sequence[str]) -> ASKGEntry:
    """`base` with the label and the YAML `fields` of `answer`."""
    taken = {ATTRIBUTE_BY_YAML_FIELD[name]: getattr(answer, ATTRIBUTE_BY_YAML_FIELD[name]) for name in fields}
    return dataclasses.replace(base, label=answer.label, **taken)


def _append_entry(path: Path, label: str, entry: ASKGEntry) -> None:
    """Add the class `label` to the YAML file `path` as `write_askg_file` would lay it out, in one append."""
    block = dump_entries({label: entry})
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as file:
            file.seek(-1, os.SEEK_END)
            block = ("\n" if file.read(1) == b"\n" else "\n\n") + block
    append_text_durably(path, block)


def _read_existing(path: Path) -> dict[str, ASKGEntry]:
    if not path.exists() or not read_text_file(path).strip():
        return {}
    return read_askg_file(path)


def read_labels(path: str | os.PathLike) -> list[str]:
    """
    Class names from a text file (one a line; blank lines and lines starting with # skipped), a JSON list or
    {index: name} object, or a CSV file with a header that has a "name" or "label" column.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        data = read_json_file(path, encoding="utf-8-sig")  # a byte-order mark is not part of the first name
        if isinstance(data, dict):
            try:
                data = [data[key] for key in sorted(data, key=int)]
            except ValueError as error:
                raise ValueError(f"{path}: a JSON object of labels needs integer keys") from error
        labels = data
    elif path.suffix.lower() == ".csv":
        rows = csv.DictReader(read_text_file(path, encoding="utf-8-sig").splitlines())
        column = next((name for name in ("name", "label") if name in (rows.fieldnames or [])), None)
        if column is None:
            raise ValueError(f"{path}: the CSV header needs a 'name' or 'label' column, got {rows.fieldnames}")
        labels = [row[column] for row in rows]
    else:
        lines = [line.strip() for line in read_text_file(path, encoding="utf-8-sig").splitlines()]
        labels = [line for line in lines if line and not line.startswith("#")]
    if isinstance(labels, list):  # spaces around a name in JSON or CSV are not part of it
        labels = [label.strip() if isinstance(label, str) else label for label in labels]
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) and label for label in labels):
        raise ValueError(f"{path}: expected a non-empty list of class names")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"{path}: repeated class names {duplicates}")
    return labels
