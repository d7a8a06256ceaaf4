"""
Downloading a video from an http(s) URL into memory, bounded in time and size: a stalled or trickling server, an
endless stream or a web page instead of a video fails with a clear error instead of hanging or filling memory.

Shipped as Hub remote code next to the pipeline: it uses the standard library only.
"""

import time
import urllib.error
import urllib.request


# A download that takes longer in all (connection, headers and body together) is stopped.
DEFAULT_DOWNLOAD_TIMEOUT_SECONDS = 300.0
# A video larger than this is refused (2 GiB: the whole file is held in memory).
DEFAULT_MAX_DOWNLOAD_BYTES = 2 * 1024**3
# Bytes asked for per read; a read returns as soon as the server has sent anything.
_READ_BYTES = 1 << 20
# Content types that are never a video: a web page (an error or a login page), JSON or XML.
_NOT_VIDEO_CONTENT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml")


def is_url(video) -> bool:
    return isinstance(video, str) and video.startswith(("http://", "https://"))


def download_video(
    url: str,
    timeout: float = DEFAULT_DOWNLOAD_TIMEOUT_SECONDS,
    max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
) -> bytes:
    """
    The bytes at `url`, downloaded within `timeout` seconds in all (not per read: a server sending a byte a second
    is stopped too) and at most `max_bytes` long. Raises ValueError naming the URL: for a network error, a timeout,
    a body over the limit, an empty body, or a content type that is not a video (a web page).
    """
    if not timeout > 0 or not max_bytes > 0:
        raise ValueError(f"timeout and max_bytes must be > 0, got timeout={timeout!r}, max_bytes={max_bytes!r}.")
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            content_type = response.headers.get_content_type() if "Content-Type" in response.headers else None
            if content_type is not None and content_type.startswith(_NOT_VIDEO_CONTENT_TYPES):
                raise ValueError(f"{url} is not a video: the server sent {content_type}, not video data.")
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise ValueError(_too_large(url, f"{int(length)} bytes", max_bytes))
            data = _read_body(response, url, deadline, max_bytes)
    except (urllib.error.URLError, OSError) as error:  # TimeoutError is an OSError
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        if isinstance(reason, TimeoutError):
            reason = f"the download took longer than timeout={timeout:g} s"
        raise ValueError(f"Could not download the video {url}: {reason}") from error
    if not data:
        raise ValueError(f"The video at {url} is empty (0 bytes).")
    if data[:64].lstrip()[:1] == b"<":
        raise ValueError(f"{url} is not a video: it starts like an HTML or XML page ({data[:40]!r}).")
    return data


def _read_body(response, url: str, deadline: float, max_bytes: int) -> bytes:
    chunks, size = [], 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError()
        _limit_next_read(response, remaining)
        chunk = response.read1(_READ_BYTES)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise ValueError(_too_large(url, f"over {max_bytes} bytes", max_bytes))
        chunks.append(chunk)


def _limit_next_read(response, seconds: float):
    """Let the next read wait at most `seconds`, so that the deadline holds within a read too."""
    sock = getattr(getattr(response.fp, "raw", None), "_sock", None)  # http.client reads through sock.makefile()
    if sock is not None:
        sock.settimeout(seconds)


def _too_large(url: str, size: str, max_bytes: int) -> str:
    return f"The video at {url} is too large ({size}; the limit is max_download_bytes={max_bytes})."
