"""Downloads of videos at URLs are bounded in time and size and refuse web pages (a loopback server, no network)."""

import http.server
import threading
import time

import pytest
import torch
from conftest import tiny_clip_config

import modeling_stdd
from modeling_stdd import STDDModel, STDDProcessor
from modeling_stdd.classify_cli import main as classify_main
from modeling_stdd.video_download import download_video


# Every slow response ends by itself after this long, so that no test can hang even if a deadline were not kept.
SLOW_RESPONSE_SECONDS = 6.0
VIDEO_LIKE_BYTES = b"\x00\x00\x00\x18ftypmp42" + bytes(100)


class SlowHandler(http.server.BaseHTTPRequestHandler):
    """`/stall`: headers, then nothing; `/trickle`: one byte every 0.25 s; `/page`: an HTML page; `/big`, `/endless`:
    10,000 bytes with and without Content-Length; anything else: a few video-like bytes."""

    stop = threading.Event()

    def do_GET(self):
        try:
            self._respond()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up, as the tests want it to
            pass

    def _respond(self):
        if self.path == "/page":
            return self._send(b"<html>Not Found</html>", "text/html; charset=utf-8")
        if self.path == "/big":
            return self._send(bytes(10_000), "video/mp4")
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        if self.path == "/endless":
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(10):
                self.wfile.write(bytes(1000))
            return
        if self.path not in ("/stall", "/trickle"):
            self.send_header("Content-Length", str(len(VIDEO_LIKE_BYTES)))
            self.end_headers()
            self.wfile.write(VIDEO_LIKE_BYTES)
            return
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.flush()
        started = time.monotonic()
        while time.monotonic() - started < SLOW_RESPONSE_SECONDS and not self.stop.is_set():
            if self.path == "/trickle":
                self.wfile.write(b"x")
                self.wfile.flush()
            self.stop.wait(0.25)

    def _send(self, body: bytes, content_type: str):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


@pytest.fixture
def server_url():
    SlowHandler.stop.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        SlowHandler.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_download_gets_its_bytes(server_url):
    assert download_video(f"{server_url}/clip.mp4", timeout=10) == VIDEO_LIKE_BYTES


@pytest.mark.parametrize("path", ["/stall", "/trickle"])
def test_the_timeout_is_a_deadline_for_the_whole_download(server_url, path):
    """A server sending a byte every 0.25 s never lets a per-read timeout of 1 s expire; the deadline does."""
    message = rf"Could not download the video {server_url}{path}: the download took longer than timeout=1 s"
    with pytest.raises(ValueError, match=message):
        download_video(server_url + path, timeout=1)


@pytest.mark.parametrize("path", ["/big", "/endless"])
def test_videos_over_the_size_limit_are_refused(server_url, path):
    with pytest.raises(ValueError, match=rf"{path} is too large .*max_download_bytes=5000"):
        download_video(server_url + path, timeout=10, max_bytes=5000)
    assert len(download_video(server_url + path, timeout=10, max_bytes=10_000)) == 10_000


def test_a_web_page_is_not_a_video(server_url):
    with pytest.raises(ValueError, match=r"/page is not a video: the server sent text/html"):
        download_video(f"{server_url}/page", timeout=10)


@pytest.fixture(scope="module")
def stdd_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_stdd")
    config = modeling_stdd.STDDConfig(**tiny_clip_config(num_frames=2).to_dict())
    STDDModel(config).eval().save_pretrained(path)
    STDDProcessor.from_clip_defaults(image_size=32, num_frames=2).save_pretrained(path)
    return path


def test_pipeline_and_cli_keep_the_deadline(server_url, stdd_dir, capsys):
    from transformers import pipeline

    classifier = pipeline("zero-shot-video-classification", model=str(stdd_dir))
    with pytest.raises(ValueError, match=r"/trickle: .*longer than timeout=1 s"):
        classifier(f"{server_url}/trickle", candidate_labels=["a", "b"], timeout=1)
    with pytest.raises(ValueError, match=r"/page is not a video: the server sent text/html"):
        classifier(f"{server_url}/page", candidate_labels=["a", "b"])
    with pytest.raises(ValueError, match="timeout must be a number > 0"):
        classifier(f"{server_url}/page", candidate_labels=["a", "b"], timeout=0)
    # A video that cannot be fetched is reported by name and the batch ends with exit status 1.
    assert classify_main([f"{server_url}/trickle", "--labels", "a, b", "--model", str(stdd_dir), "--timeout", "1"]) == 1
    assert "/trickle: the download took longer than timeout=1 s" in capsys.readouterr().err
