"""The bad-input table (issue item 9): every case is a typed error raised before generation, the
provider keeps working afterwards, and nothing is written to the temp dir. URLs are served by a loopback
HTTP server this module starts (404, a hang past the timeout, too large, wrong content type)."""

from __future__ import annotations

import base64
import io
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from abstractllm import create_llm
from abstractllm.exceptions import (
    ImageProcessingError,
    InvalidParameterError,
    MemoryLimitError,
    UnsupportedFeatureError,
)
from media_helpers import png_header


def png(size=(64, 48), color=(10, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()




GOOD = png()
_RELEASE = threading.Event()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):  # noqa: N802
        if self.path == "/ok.png":
            self._send(200, "image/png", GOOD)
        elif self.path == "/hang.png":
            _RELEASE.wait(5)  # longer than the client's timeout
            self._send(200, "image/png", GOOD)
        elif self.path == "/big.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(200_000_000))
            self.end_headers()
            self.wfile.write(GOOD)
        elif self.path == "/stream.png":  # no Content-Length: the byte limit must cut the stream
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            try:
                for _ in range(64):
                    self.wfile.write(b"\x00" * 65536)
            except OSError:
                pass
        elif self.path == "/to-file.png":  # a redirect must never reach the local disk
            self.send_response(302)
            self.send_header("Location", "file:///etc/hostname")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/page.html":
            self._send(200, "text/html", b"<html>not an image</html>")
        else:
            self._send(404, "text/plain", b"nope")

    def _send(self, code, ctype, body):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    _RELEASE.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def vlm(vision_model: Path):
    llm = create_llm(
        "mlx", model=str(vision_model), temperature=0.0, max_tokens=3, image_fetch_timeout=0.5, max_image_bytes="2MB"
    )
    # loaded and run once before any test routes tempfiles elsewhere: MLX's CPU backend writes its compiled
    # kernels under the temp dir the first time (not a file a request leaves behind)
    llm.generate("Hi", files=[GOOD], max_tokens=2)
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad-media")
    out = {}
    out["corrupt.jpg"] = d / "corrupt.jpg"
    out["corrupt.jpg"].write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4)
    out["truncated.png"] = d / "truncated.png"
    big = io.BytesIO()
    Image.fromarray((np.random.RandomState(0).rand(200, 200, 3) * 255).astype("uint8")).save(big, "PNG")
    out["truncated.png"].write_bytes(big.getvalue()[: len(big.getvalue()) // 2])
    out["empty.png"] = d / "empty.png"
    out["empty.png"].write_bytes(b"")
    out["text.jpg"] = d / "text.jpg"
    out["text.jpg"].write_text("this is just text, named like a picture\n" * 20)
    out["bomb.png"] = d / "bomb.png"
    out["bomb.png"].write_bytes(png_header(30000, 30000))
    out["dir"] = d / "a-directory.png"
    out["dir"].mkdir()
    out["corrupt.mp4"] = d / "corrupt.mp4"
    out["corrupt.mp4"].write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00\x00\x00\x00mp42isom" + b"\xde\xad" * 500)
    out["big.png"] = d / "big.png"
    out["big.png"].write_bytes(png((1500, 1500)) + b"\x00" * 2_100_000)
    tiny_video = d / "tiny.mp4"
    import av

    with av.open(str(tiny_video), mode="w") as c:
        s = c.add_stream("mpeg4", rate=4)
        s.width, s.height, s.pix_fmt = 16, 16, "yuv420p"
        for _ in range(4):
            for p in s.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    out["tiny.mp4"] = tiny_video
    return out


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# (id, expected error, how to build the call: (files, extra kwargs) from the fixtures)
CASES = [
    ("corrupt-jpeg", ImageProcessingError, lambda f, u: ([str(f["corrupt.jpg"])], {})),
    ("truncated-png", ImageProcessingError, lambda f, u: ([str(f["truncated.png"])], {})),
    ("zero-byte-file", ImageProcessingError, lambda f, u: ([str(f["empty.png"])], {})),
    ("zero-bytes", ImageProcessingError, lambda f, u: ([b""], {})),
    ("text-named-jpg", ImageProcessingError, lambda f, u: ([str(f["text.jpg"])], {})),
    ("header-30000x30000", ImageProcessingError, lambda f, u: ([str(f["bomb.png"])], {})),
    ("bomb-as-bytes", ImageProcessingError, lambda f, u: ([png_header(30000, 30000)], {})),
    ("1x1", ImageProcessingError, lambda f, u: ([png((1, 1))], {})),
    ("aspect-222-to-1", ImageProcessingError, lambda f, u: ([png((2000, 9))], {})),
    ("missing-path", ImageProcessingError, lambda f, u: (["/no/such/dir/picture.png"], {})),
    ("directory", ImageProcessingError, lambda f, u: ([str(f["dir"])], {})),
    ("bad-base64", ImageProcessingError, lambda f, u: (["@@@@ this is not base64 at all @@@@" * 3], {})),
    ("data-uri-wrong-type", ImageProcessingError, lambda f, u: ([f"data:text/plain;base64,{b64(b'hello')}"], {})),
    ("data-uri-bad-base64", ImageProcessingError, lambda f, u: (["data:image/png;base64,%%%notbase64%%%"], {})),
    ("data-uri-not-an-image", ImageProcessingError, lambda f, u: ([f"data:image/png;base64,{b64(b'plain text')}"], {})),
    ("unknown-dict", ImageProcessingError, lambda f, u: ([{"foo": "bar"}], {})),
    ("unsupported-type", ImageProcessingError, lambda f, u: ([3.14], {})),
    ("url-404", ImageProcessingError, lambda f, u: ([f"{u}/missing.png"], {})),
    ("url-hangs-timeout", ImageProcessingError, lambda f, u: ([f"{u}/hang.png"], {})),
    ("url-too-large", ImageProcessingError, lambda f, u: ([f"{u}/big.png"], {})),
    ("url-stream-too-large", ImageProcessingError, lambda f, u: ([f"{u}/stream.png"], {})),
    ("url-wrong-content-type", ImageProcessingError, lambda f, u: ([f"{u}/page.html"], {})),
    ("url-redirects-to-file", ImageProcessingError, lambda f, u: ([f"{u}/to-file.png"], {})),
    ("url-refused-port", ImageProcessingError, lambda f, u: (["http://127.0.0.1:9/x.png"], {})),
    ("file-over-max-bytes", ImageProcessingError, lambda f, u: ([str(f["big.png"])], {})),
    ("float-array-out-of-range", ImageProcessingError, lambda f, u: ([np.full((32, 32, 3), 3.0)], {})),
    ("array-bad-shape", ImageProcessingError, lambda f, u: ([np.zeros((32, 32, 9), np.uint8)], {})),
    ("text-mode-file", ImageProcessingError, lambda f, u: ([io.StringIO("text")], {})),
    ("corrupt-video", ImageProcessingError, lambda f, u: ([str(f["corrupt.mp4"])], {})),
    ("video-frames-too-small", ImageProcessingError, lambda f, u: ([str(f["tiny.mp4"])], {})),
    ("bad-max-image-pixels", InvalidParameterError, lambda f, u: ([GOOD], {"max_image_pixels": 0})),
    ("bad-max-image-bytes", InvalidParameterError, lambda f, u: ([GOOD], {"max_image_bytes": "lots"})),
    ("bad-fetch-timeout", InvalidParameterError, lambda f, u: ([f"{u}/ok.png"], {"image_fetch_timeout": -1})),
]


def _tmp_listing() -> set[str]:
    return set(Path(tempfile.gettempdir()).iterdir()) if tempfile.gettempdir() else set()


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Route every tempfile of this process to an empty folder, to see whether anything lands there."""
    d = tmp_path / "private-tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    monkeypatch.setenv("TMPDIR", str(d))
    return d


@pytest.mark.parametrize("case_id,error,build", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_typed_error_and_leaves_nothing(vlm, files, server, private_tmp, case_id, error, build):
    items, extra = build(files, server)
    with pytest.raises(error) as info:
        vlm.generate("What is in the picture?", files=items, **extra)
    assert str(info.value)  # a message that says what was wrong
    assert list(private_tmp.iterdir()) == []  # nothing written to disk
    ok = vlm.generate("And this one?", files=[GOOD], max_tokens=2)  # the provider still works
    assert ok.usage.completion_tokens >= 1


def test_table_is_large_enough():
    assert len(CASES) >= 25


def test_good_url_and_parts_work(vlm, server):
    r1 = vlm.generate("URL?", files=[f"{server}/ok.png"])
    r2 = vlm.generate(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "URL?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(GOOD)}"}},
                ],
            }
        ]
    )
    assert r1.content == r2.content and r1.usage.prompt_tokens == r2.usage.prompt_tokens


def test_media_in_assistant_message_is_refused(vlm):
    msgs = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "x.png"}}]},
        {"role": "user", "content": "again"},
    ]
    with pytest.raises(InvalidParameterError):
        vlm.generate(messages=msgs)


def test_memory_check_refuses_before_decoding(vision_model: Path):
    with create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=2, memory_limit="80MB") as llm:
        with pytest.raises(MemoryLimitError) as info:
            llm.generate("Big?", files=[png_header(8000, 8000)])  # 64 MP declared; no pixel data exists
        assert info.value.required_bytes > info.value.available_bytes
        assert llm.generate("Small?", files=[GOOD]).usage.completion_tokens >= 1


def test_video_to_a_model_without_video_support(tiny_llm, files):
    with pytest.raises(UnsupportedFeatureError):
        tiny_llm.generate("What happens?", files=[str(files["corrupt.mp4"])])


def test_memory_check_counts_the_models_vision_work():
    """Decoding a 2000x2000 image fits in 300 MB, but this model's processor keeps up to 4 MP, and its
    vision tower's attention over ~20k patches would not: refused before decoding, numbers given."""
    from abstractllm.testing import demo_model

    path = demo_model("vision", "tiny", max_pixels=4_000_000)
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=2, memory_limit="300MB") as llm:
        with pytest.raises(MemoryLimitError, match="vision tokens") as info:
            llm.generate("Big?", files=[png_header(2000, 2000)])
        assert info.value.required_bytes > 1_000_000_000
        assert llm.generate("Small?", files=[GOOD]).usage.completion_tokens >= 1
