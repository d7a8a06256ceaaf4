import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
import yaml
from askg_testing import make_entry, make_graph
from modeling_stdd.askg import (
    ASKGGenerator,
    BackendError,
    OpenAIChatBackend,
    TransformersChatBackend,
    read_askg_file,
    read_labels,
    validate_entries,
    verbalize_entries,
)
from modeling_stdd.askg.__main__ import main
from modeling_stdd.askg.generator import EXAMPLE_ENTRY, EXAMPLE_LABEL, parse_answer
from modeling_stdd.askg.schema import CLAUSE_FIELDS, dump_entries


def chat_response(content):
    choice = {"index": 0, "message": {"role": "assistant", "content": content}}
    return 200, {"id": "test", "object": "chat.completion", "choices": [choice]}


def requested_label(body):
    """The class a request is about: 'Action class: X' (stage 1) or the graph's key (stage 2)."""
    first_request = body["messages"][3]["content"]
    if first_request.startswith("Action class: "):
        return first_request.removeprefix("Action class: ")
    return next(iter(yaml.safe_load(first_request)))


def helpful_model(body):
    """Answers like a good model: the graph of make_graph(label), or the clauses of make_entry(label)."""
    label = requested_label(body)
    if body["messages"][3]["content"].startswith("Action class: "):
        return chat_response("Here it is:\n```yaml\n" + dump_entries({label: make_graph(label)}) + "```\n")
    entry = make_entry(label)
    return chat_response(yaml.safe_dump(entry.subset(CLAUSE_FIELDS).to_yaml_dict(), sort_keys=False))


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status, payload = self.server.respond(body)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server(monkeypatch):
    """`start(respond)`: a chat-completions server on 127.0.0.1 answering with `respond(body) -> (status, payload)`."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    servers = []

    def start(respond):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.respond, server.requests = respond, []
        server.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def backend_for(server, **kwargs):
    return OpenAIChatBackend(
        model="test-model", base_url=server.base_url, timeout_seconds=5, backoff_seconds=0.01, **kwargs
    )


def test_generate_both_stages_through_a_chat_completions_server(chat_server, tmp_path, monkeypatch):
    monkeypatch.setenv("STDD_TEST_KEY", "secret-key")
    server = chat_server(helpful_model)
    generator = ASKGGenerator(backend_for(server, api_key_env="STDD_TEST_KEY"))
    result = generator.run(["stirring coffee", "sweetening tea"], tmp_path / "out.yml")
    assert result.written == ["stirring coffee", "sweetening tea"] and not result.failed and not result.skipped
    written = read_askg_file(tmp_path / "out.yml")
    assert written == {label: make_entry(label) for label in result.written}
    assert validate_entries(written).issues == []
    assert len(server.requests) == 4
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer secret-key"
    assert request["body"]["model"] == "test-model" and request["body"]["temperature"] == 0.0
    roles = [message["role"] for message in request["body"]["messages"]]
    assert roles == ["system", "user", "assistant", "user"]  # one-shot example, then the class


def test_an_invalid_answer_gets_one_repair_round(chat_server, tmp_path):
    def sloppy_then_careful(body):
        label = requested_label(body)
        if len(body["messages"]) == 4 and body["messages"][3]["content"].startswith("Action class: "):
            graph = make_graph(label)
            graph.object_triples.append("<spoon, sugar>")
            return chat_response(dump_entries({label: graph}))
        return helpful_model(body)

    server = chat_server(sloppy_then_careful)
    result = ASKGGenerator(backend_for(server)).run(["stirring coffee"], tmp_path / "out.yml")
    assert result.written == ["stirring coffee"]
    repair = server.requests[1]["body"]["messages"]
    assert len(server.requests) == 3 and len(repair) == 6
    assert repair[4]["role"] == "assistant" and "<spoon, sugar>" in repair[4]["content"]
    assert "obj_rel_triples: item 3" in repair[5]["content"]


def test_a_class_still_invalid_after_repair_fails_and_the_run_goes_on(chat_server, tmp_path):
    def fails_on_tea(body):
        if requested_label(body) == "sweetening tea":
            return chat_response("I cannot help with that.")
        return helpful_model(body)

    server = chat_server(fails_on_tea)
    result = ASKGGenerator(backend_for(server)).run(["sweetening tea", "stirring coffee"], tmp_path / "out.yml")
    assert result.written == ["stirring coffee"]
    assert list(result.failed) == ["sweetening tea"]
    assert "still invalid after one repair" in result.failed["sweetening tea"]
    assert list(read_askg_file(tmp_path / "out.yml")) == ["stirring coffee"]


def test_server_errors_are_retried_then_reported(chat_server):
    statuses = iter([500, 429, 200])

    def flaky(body):
        status = next(statuses)
        return chat_response("hello") if status == 200 else (status, {"error": {"message": "busy"}})

    server = chat_server(flaky)
    assert backend_for(server, max_retries=2).complete([{"role": "user", "content": "hi"}]) == "hello"
    assert len(server.requests) == 3

    server = chat_server(lambda body: (503, {"error": {"message": "overloaded"}}))
    with pytest.raises(BackendError, match="gave up after 2 attempts: HTTP 503.*overloaded"):
        backend_for(server, max_retries=1).complete([{"role": "user", "content": "hi"}])
    assert len(server.requests) == 2

    server = chat_server(lambda body: (401, {"error": {"message": "bad key"}}))
    with pytest.raises(BackendError, match="HTTP 401.*bad key"):
        backend_for(server, max_retries=3).complete([{"role": "user", "content": "hi"}])
    assert len(server.requests) == 1

    server = chat_server(lambda body: (200, {"choices": []}))
    with pytest.raises(BackendError, match="no choices"):
        backend_for(server).complete([{"role": "user", "content": "hi"}])


@pytest.mark.parametrize(
    "refusal",
    [(400, {"error": {"message": "maximum context length is exceeded"}}), chat_response(None)],
    ids=["HTTP 400", "no text"],
)
def test_a_class_the_server_refuses_fails_and_the_run_goes_on(chat_server, tmp_path, refusal):
    server = chat_server(lambda body: refusal if requested_label(body) == "sweetening tea" else helpful_model(body))
    labels = ["stirring coffee", "sweetening tea", "pouring milk"]
    result = ASKGGenerator(backend_for(server, max_retries=0)).run(labels, tmp_path / "out.yml")
    assert result.written == ["stirring coffee", "pouring milk"] and list(result.failed) == ["sweetening tea"]
    assert result.failed["sweetening tea"].startswith("'sweetening tea': ")


def test_a_response_cut_off_midway_is_retried():
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    answers = [b'{"choices": [', json.dumps(chat_response("whole")[1]).encode()]

    def serve():
        for answer in answers:
            connection, _ = listener.accept()
            connection.recv(65536)
            length = len(answers[-1]) if answer is answers[0] else len(answer)  # the first one promises more
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                               + str(length).encode() + b"\r\n\r\n" + answer)
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    backend = OpenAIChatBackend(model="m", base_url=f"http://127.0.0.1:{listener.getsockname()[1]}/v1",
                                timeout_seconds=5, max_retries=1, backoff_seconds=0)
    try:
        assert backend.complete([{"role": "user", "content": "hi"}]) == "whole"
    finally:
        listener.close()


def test_a_usable_first_answer_is_kept_when_the_repair_is_worse(chat_server, tmp_path):
    def warned_then_nonsense(body):
        label = requested_label(body)
        if len(body["messages"]) > 4:
            return chat_response("Sorry, I cannot do that.")
        if body["messages"][3]["content"].startswith("Action class: "):
            graph = make_graph(label)
            graph.objects.append(graph.objects[0])  # a repeated object: a warning, not an error
            return chat_response(dump_entries({label: graph}))
        return helpful_model(body)

    result = ASKGGenerator(backend_for(chat_server(warned_then_nonsense))).run(["stirring coffee"], tmp_path / "o.yml")
    assert result.written == ["stirring coffee"] and not result.failed
    assert read_askg_file(tmp_path / "o.yml")["stirring coffee"].objects[-1] == make_graph("stirring coffee").objects[0]


def test_timeouts_are_retried(chat_server):
    def slow(body):
        time.sleep(0.5)
        return chat_response("late")

    server = chat_server(slow)
    backend = OpenAIChatBackend(
        model="m", base_url=server.base_url, timeout_seconds=0.1, max_retries=1, backoff_seconds=0
    )
    with pytest.raises(BackendError, match="gave up after 2 attempts"):
        backend.complete([{"role": "user", "content": "hi"}])
    assert len(server.requests) == 2


def test_an_interrupted_run_resumes_where_it_stopped(chat_server, tmp_path):
    def down_for_tea(body):
        return (500, {"error": "down"}) if requested_label(body) == "sweetening tea" else helpful_model(body)

    labels = ["stirring coffee", "sweetening tea", "pouring milk"]
    output = tmp_path / "out.yml"
    with pytest.raises(BackendError):
        ASKGGenerator(backend_for(chat_server(down_for_tea), max_retries=0)).run(labels, output)
    assert list(read_askg_file(output)) == ["stirring coffee"]
    assert [path.name for path in tmp_path.iterdir()] == ["out.yml"]  # no temporary file left behind

    server = chat_server(helpful_model)
    result = ASKGGenerator(backend_for(server)).run(labels, output)
    assert result.skipped == ["stirring coffee"] and result.written == ["sweetening tea", "pouring milk"]
    assert "stirring coffee" not in {requested_label(request["body"]) for request in server.requests}
    assert read_askg_file(output) == {label: make_entry(label) for label in labels}


def test_rule_based_clause_stage_asks_only_for_the_graph(chat_server, tmp_path):
    server = chat_server(helpful_model)
    ASKGGenerator(backend_for(server), clause_stage="rules").run(["stirring coffee"], tmp_path / "out.yml")
    assert len(server.requests) == 1
    expected = verbalize_entries({"stirring coffee": make_graph("stirring coffee")})
    assert read_askg_file(tmp_path / "out.yml") == expected


def test_cli_generate_reads_server_settings_from_the_environment(chat_server, tmp_path, monkeypatch, capsys):
    server = chat_server(helpful_model)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_MODEL", "env-model")
    (tmp_path / "labels.txt").write_text("# my classes\nstirring coffee\n\nsweetening tea\n")
    out = tmp_path / "out.yml"
    assert main(["generate", "--labels", str(tmp_path / "labels.txt"), "--out", str(out), "--max-retries", "0"]) == 0
    assert "2 classes written, 0 already in" in capsys.readouterr().out
    assert {request["body"]["model"] for request in server.requests} == {"env-model"}
    assert main(["generate", "--labels", str(tmp_path / "labels.txt"), "--out", str(out)]) == 0
    assert "0 classes written, 2 already in" in capsys.readouterr().out
    assert main(["validate", "--strict", str(out)]) == 0


def test_backend_settings_are_checked(monkeypatch):
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    with pytest.raises(ValueError, match="no model given"):
        OpenAIChatBackend()
    with pytest.raises(ValueError, match="timeout_seconds must be positive"):
        OpenAIChatBackend(model="m", timeout_seconds=0)
    with pytest.raises(ValueError, match="clause_stage"):
        ASKGGenerator(backend=None, clause_stage="magic")


def test_parse_answer_accepts_fenced_keyed_or_bare_yaml():
    graph = make_graph("stirring coffee")
    keyed = dump_entries({"stirring coffee": graph})
    bare = yaml.safe_dump(graph.to_yaml_dict(), sort_keys=False)
    for answer in (keyed, f"Sure!\n```yaml\n{keyed}```", bare):
        assert parse_answer(answer, "stirring coffee") == graph
    for answer, message in (("just words", "not a YAML mapping"), ("a: [", "not valid YAML")):
        with pytest.raises(ValueError, match=message):
            parse_answer(answer, "stirring coffee")


def test_the_one_shot_example_follows_every_rule():
    assert validate_entries({EXAMPLE_LABEL: EXAMPLE_ENTRY}).issues == []


def test_read_labels_formats(tmp_path):
    (tmp_path / "a.txt").write_text("# comment\njumping\n\nrunning\n")
    (tmp_path / "b.json").write_text('{"1": "running", "0": "jumping", "10": "skipping"}')
    (tmp_path / "c.json").write_text('["jumping", "running"]')
    (tmp_path / "d.csv").write_text("id,name\n0,jumping\n1,running\n")
    assert read_labels(tmp_path / "a.txt") == ["jumping", "running"]
    assert read_labels(tmp_path / "b.json") == ["jumping", "running", "skipping"]
    assert read_labels(tmp_path / "c.json") == read_labels(tmp_path / "d.csv") == ["jumping", "running"]
    (tmp_path / "e.txt").write_text("jumping\njumping\n")
    (tmp_path / "f.csv").write_text("id,class\n0,jumping\n")
    (tmp_path / "g.json").write_text("{}")
    for name, message in (("e.txt", "repeated"), ("f.csv", "'name' or 'label' column"), ("g.json", "non-empty list")):
        with pytest.raises(ValueError, match=message):
            read_labels(tmp_path / name)
    # A byte-order mark, spaces around names and indented comments are not part of any class name.
    (tmp_path / "h.txt").write_bytes("\ufeffApply Eye Makeup\n  # old: foo\nArchery \n".encode("utf-8"))
    (tmp_path / "i.csv").write_text("id,name\n0, Apply Eye Makeup\n1,Archery \n")
    (tmp_path / "j.json").write_text('[" Apply Eye Makeup", "Archery "]')
    for name in ("h.txt", "i.csv", "j.json"):
        assert read_labels(tmp_path / name) == ["Apply Eye Makeup", "Archery"]


def tiny_chat_model():
    """A random one-layer Llama with a word-level tokenizer and a chat template, built locally."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<unk>", "<pad>", "<eos>", "system", "user", "assistant", ":", "where", "which", "the", "hand", "spoon"]
    word_level = Tokenizer(models.WordLevel({word: index for index, word in enumerate(words)}, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=word_level, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>"
    )
    tokenizer.chat_template = (
        "{% for message in messages %}{{ message['role'] }} : {{ message['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant :{% endif %}"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    return LlamaForCausalLM(config), tokenizer


def test_transformers_backend_returns_only_the_new_text_deterministically():
    model, tokenizer = tiny_chat_model()
    backend = TransformersChatBackend(model, tokenizer, max_new_tokens=5)
    messages = [{"role": "system", "content": "where the hand"}, {"role": "user", "content": "which spoon"}]
    answer = backend.complete(messages)
    assert answer == backend.complete(messages)
    new_tokens = tokenizer(answer, add_special_tokens=False)["input_ids"]
    assert 0 < len(new_tokens) <= 5 and "user" not in answer.split()

    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        TransformersChatBackend(model, tokenizer)


def test_binary_garbage_from_the_server_is_retried_and_named(chat_server, tmp_path):
    """Bytes no JSON encoding can hold (json.loads would raise a UnicodeDecodeError) are a failed try, named."""
    answers = iter([(200, b"\x00\xd8\x00\xdc\xff\xfe garbage"), (200, b"\xd8\x00\x00")])
    server = chat_server(lambda body: next(answers, helpful_model(body)))
    result = ASKGGenerator(backend_for(server, max_retries=2)).run(["stirring coffee"], tmp_path / "out.yml")
    assert result.written == ["stirring coffee"] and len(server.requests) == 4
    garbage = chat_server(lambda body: (200, b"\x00\xd8\x00\xdc\xff\xfe garbage"))
    with pytest.raises(BackendError, match=rf"while generating 'sweetening tea': gave up after 2 attempts: "
                                           rf"{garbage.base_url}/chat/completions sent a response that is not JSON"):
        ASKGGenerator(backend_for(garbage, max_retries=1)).run(["sweetening tea"], tmp_path / "other.yml")


def test_classes_are_appended_not_the_file_rewritten(chat_server, tmp_path, monkeypatch):
    """Each class is one append; the file reads as if written at once and a rerun resumes after it."""
    import modeling_stdd.askg.generator as generator_module

    appends, rewrites = [], []
    append = generator_module.append_text_durably
    def recording_append(path, text):
        appends.append(text)
        return append(path, text)

    monkeypatch.setattr(generator_module, "append_text_durably", recording_append)
    monkeypatch.setattr("modeling_stdd.askg.schema.write_text_atomically", lambda *args: rewrites.append(args))
    server = chat_server(helpful_model)
    labels = ["stirring coffee", "sweetening tea", "pouring milk"]
    out = tmp_path / "out.yml"
    ASKGGenerator(backend_for(server)).run(labels[:2], out)
    result = ASKGGenerator(backend_for(server)).run(labels, out)
    assert (result.skipped, result.written) == (labels[:2], labels[2:])
    assert len(appends) == 3 and rewrites == []
    assert out.read_text(encoding="utf-8") == dump_entries({label: make_entry(label) for label in labels})


def test_a_failed_append_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    from modeling_stdd.file_utils import append_text_durably

    path = append_text_durably(tmp_path / "out.yml", "first: 1\n")
    monkeypatch.setattr("os.fsync", lambda descriptor: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError, match="No space left"):
        append_text_durably(path, "second: 2\n")
    assert path.read_text() == "first: 1\n"


def test_label_files_that_are_not_utf8_or_repeat_a_json_key_are_refused_by_name(tmp_path):
    latin1 = tmp_path / "labels.txt"
    latin1.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"labels.txt is not UTF-8 text: byte 0xe9 at offset 3"):
        read_labels(latin1)
    repeated = tmp_path / "labels.json"
    repeated.write_text('{"0": "running", "1": "swimming", "0": "juggling"}')
    with pytest.raises(ValueError, match=r"labels.json: duplicate keys \['0'\]"):
        read_labels(repeated)
