"""Server security and availability: the API key, a minimal open ``/health``, ``--allow-local-files``
(paths, ``file://``, ``..`` and symlink tricks), image URLs to private addresses (refused without
``--allow-private-urls``, on every redirect hop), ``--max-tokens-limit``, and 503 while the model is not
loaded. Real servers in subprocesses on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal

import httpx
import openai
import pytest

from abstractllm.server.errors import APIError
from abstractllm.server.media_policy import apply_media_policy, check_media_reference
from test_server_support import ServerProcess

KEY = "sk-test-123"
MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("allowed")
    (root / "cat.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "sub").mkdir()
    (root / "sub" / "dog.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    outside = tmp_path_factory.mktemp("outside") / "secret.png"
    outside.write_bytes(b"secret")
    os.symlink(outside, root / "link.png")
    return root


@pytest.fixture(scope="module")
def keyed_server(tiny_model, media_dir):
    srv = ServerProcess(tiny_model, "--api-key", KEY, "--allow-local-files", str(media_dir), "--max-tokens-limit", "8")
    srv.auth = {"Authorization": f"Bearer {KEY}"}
    yield srv
    assert srv.stop() == 0, "".join(srv.log)


def test_api_key_required_except_health(keyed_server):
    srv = keyed_server
    assert httpx.get(srv.url + "/health").status_code == 200
    for path in ("/v1/models", "/stats"):
        r = httpx.get(srv.url + path)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        assert httpx.get(srv.url + path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(srv.url + path, headers=srv.auth).status_code == 200
    with openai.OpenAI(base_url=srv.base_url, api_key="wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            bad.chat.completions.create(model="m", messages=MSGS, max_tokens=2)
        assert info.value.status_code == 401 and info.value.body["code"] == "invalid_api_key"
    with openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0) as good:
        r = good.chat.completions.create(model="m", messages=MSGS, max_tokens=2, temperature=0)
        assert r.usage.completion_tokens == 2
    # the key is checked before the body is read: an oversize unauthenticated body is a 401, not a 413
    r = httpx.post(srv.base_url + "/chat/completions", content=b"x" * 100_000)
    assert r.status_code == 401


def _image_request(srv, url: str) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"},
                                                       {"type": "image_url", "image_url": {"url": url}}]}],
            "max_tokens": 2}
    return httpx.post(srv.base_url + "/chat/completions", json=body, headers=getattr(srv, "auth", {}))


@pytest.mark.parametrize("url", ["cat.png", "sub/dog.png", "sub/../cat.png", "{root}/cat.png",
                                 "file://{root}/cat.png", "file://{root}/sub%2Fdog.png"])
def test_paths_inside_the_allowed_folder_pass_the_policy(keyed_server, media_dir, url):
    # the policy lets them through; the text-only model then refuses images (a different, typed 400)
    r = _image_request(keyed_server, url.format(root=media_dir))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "unsupported_feature", r.text


@pytest.mark.parametrize("url", ["../outside/secret.png", "{root}/../secret.png", "/etc/passwd",
                                 "file:///etc/passwd", "file://{root}/../x.png", "file://{root}/%2e%2e/x.png",
                                 "file://evil.host/{root}/cat.png", "link.png", "sub/../../x.png",
                                 "gopher://x/y.png"])
def test_paths_outside_are_refused(keyed_server, media_dir, url):
    r = _image_request(keyed_server, url.format(root=media_dir))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "local_file_refused", r.text


def test_health_is_minimal_with_an_api_key(keyed_server):
    h = httpx.get(keyed_server.url + "/health").json()
    assert set(h) == {"status", "model_loaded", "device", "uptime_s"} and h["status"] == "ok", h
    stats = httpx.get(keyed_server.url + "/stats", headers=keyed_server.auth).json()
    assert stats["model"] and stats["status"] == "ok" and stats["error"] is None
    assert stats["blas"].startswith("OpenBLAS ")  # not on the open /health: it names files on the host


PRIVATE = "The image URL was refused: it points to a private address."


def test_image_urls_to_private_addresses_are_refused_without_the_flag(keyed_server):
    fs = _http_file_server(b"\x89PNG\r\n\x1a\n")
    with fs as url:
        answers = [_image_request(keyed_server, u) for u in (url, url.replace("127.0.0.1", "localhost"))]
        assert fs.requests == []  # nothing was sent to the loopback server
    answers.append(_image_request(keyed_server, url))  # now a closed port: the same answer
    for r in answers:
        assert r.status_code == 400 and r.json()["error"] == {
            "message": PRIVATE, "type": "invalid_request_error", "param": "messages", "code": "url_refused"}, r.text
    # refused before connecting (these would hang or fail differently if tried): cloud metadata,
    # private ranges, IPv6 loopback, IPv4-mapped loopback, the unspecified address
    for url in ("http://169.254.169.254/latest/meta-data/", "https://10.0.0.1/x.png", "http://192.168.1.1/",
                "http://[::1]:9/x.png", "http://[::ffff:127.0.0.1]/x.png", "http://0.0.0.0:9/"):
        r = _image_request(keyed_server, url)
        assert r.status_code == 400 and r.json()["error"]["message"] == PRIVATE, (url, r.text)
    video = {"messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": "http://127.0.0.1:9/v.mp4"}}]}]}
    r = httpx.post(keyed_server.base_url + "/chat/completions", json=video, headers=keyed_server.auth)
    assert r.status_code == 400 and r.json()["error"]["message"] == PRIVATE.replace("image", "video")
    # the server keeps serving
    assert httpx.post(keyed_server.base_url + "/chat/completions", headers=keyed_server.auth,
                      json={"messages": MSGS, "max_tokens": 2}).status_code == 200


def test_fetch_url_checks_every_redirect_hop():
    """``allow_address`` is checked on each hop: a redirect to a refused address is not followed."""
    from abstractllm.media.sources import URLRefusedError, fetch_url
    from abstractllm.server.media_policy import is_public_address

    png = b"\x89PNG\r\n\x1a\n-bytes"
    for host in ("::1", "127.0.0.2"):  # a second loopback address for the second hop
        inner = _http_file_server(png, host=host)
        try:
            target = inner.__enter__()
            break
        except OSError:
            continue
    else:
        pytest.skip("no second loopback address (::1 or 127.0.0.2) to redirect to")
    outer = _http_file_server(b"", redirect=target)
    try:
        with outer as start:
            assert fetch_url(start, timeout=5, max_bytes=1000).data == png  # the library default: permissive
            assert len(outer.requests) == 1 and len(inner.requests) == 1
            with pytest.raises(URLRefusedError):
                fetch_url(start, timeout=5, max_bytes=1000, allow_address=lambda ip: ip == "127.0.0.1")
            assert len(outer.requests) == 2 and len(inner.requests) == 1  # the second hop was never contacted
            with pytest.raises(URLRefusedError):
                fetch_url(start, timeout=5, max_bytes=1000, allow_address=is_public_address)
            assert len(outer.requests) == 2
            assert fetch_url(start, timeout=5, max_bytes=1000, allow_address=lambda ip: True).data == png
    finally:
        inner.__exit__(None, None, None)


def test_max_tokens_limit(keyed_server):
    srv = keyed_server  # started with --max-tokens-limit 8: larger asks are clamped to it, not refused
    with openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0) as client:
        r = client.chat.completions.create(model="m", messages=MSGS, max_tokens=9, temperature=0)
        assert r.usage.completion_tokens == 8 and r.choices[0].finish_reason == "length"
        chunks = list(client.chat.completions.create(model="m", messages=MSGS, max_tokens=10**6, stream=True,
                                                     temperature=0, stream_options={"include_usage": True}))
        assert chunks[-1].usage.completion_tokens == 8
        assert client.completions.create(model="m", prompt="x", max_tokens=9, temperature=0).usage.completion_tokens <= 8
        assert client.chat.completions.create(model="m", messages=MSGS, max_tokens=8,
                                              temperature=0).usage.completion_tokens == 8
        r = client.chat.completions.create(model="m", messages=MSGS, temperature=0)  # no max_tokens: the limit
        assert r.usage.completion_tokens == 8 and r.choices[0].finish_reason == "length"
    r = httpx.post(srv.url + "/api/v1/generate", json={"messages": MSGS, "max_new_tokens": 9}, headers=srv.auth)
    assert r.status_code == 200 and r.json()["usage"]["output_tokens"] <= 8


def test_policy_rewrites_to_resolved_paths_and_leaves_remote_urls(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    msgs = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "a.png"}},
        {"type": "image", "image": "file://" + str(tmp_path / "a.png")},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "video", "video": "data:video/mp4;base64,AAAA"},
        {"type": "text", "text": "hi"}]}]
    out = apply_media_policy(msgs, tmp_path)
    parts = out[0]["content"]
    assert parts[0]["image_url"]["url"] == str((tmp_path / "a.png").resolve())
    assert parts[1]["image"] == str((tmp_path / "a.png").resolve())
    assert parts[2]["image_url"]["url"] == "https://example.com/a.png"
    assert parts[3]["video"].startswith("data:video/mp4")
    assert msgs[0]["content"][0]["image_url"]["url"] == "a.png"  # the input is not modified
    with pytest.raises(APIError) as info:
        check_media_reference(str(tmp_path / "a.png"), None)  # default: every local path refused
    assert info.value.status == 400 and "--allow-local-files" in info.value.message
    with pytest.raises(APIError):
        apply_media_policy([{"role": "user", "content": [{"type": "video_url", "video_url": {"url": "/x.mp4"}}]}],
                           tmp_path)
    with pytest.raises(APIError):
        check_media_reference("a\x00.png", tmp_path)


@pytest.fixture(scope="module")
def broken_model(tiny_model, tmp_path_factory):
    """A model folder that passes inspection (config, safetensors headers) but cannot be loaded: its
    config's MLP width does not match the weights' shapes."""
    path = tmp_path_factory.mktemp("broken") / "broken-model"
    shutil.copytree(tiny_model, path)
    config = json.loads((path / "config.json").read_text())
    config["intermediate_size"] += 32
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_model_not_loaded_is_503(broken_model):
    srv = ServerProcess(broken_model, wait_ready=False)
    try:
        health = srv.wait_health(503)
        assert health["status"] == "error" and health["model_loaded"] is False and health["error"]
        with openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0) as client:
            with pytest.raises(openai.InternalServerError) as info:
                client.chat.completions.create(model="m", messages=MSGS, max_tokens=2)
            assert info.value.status_code == 503 and info.value.body["code"] == "model_not_loaded"
            with pytest.raises(openai.InternalServerError):
                client.completions.create(model="m", prompt="x", max_tokens=2)
        assert httpx.post(srv.url + "/api/v1/generate", json={"messages": MSGS}).status_code == 503
        assert httpx.post(srv.base_url + "/cache/clear").status_code == 503
        stats = httpx.get(srv.url + "/stats").json()
        assert stats["status"] == "error" and stats["prompt_cache"] is None
        # bad input is still a 400, not a 503 in disguise
        assert httpx.post(srv.base_url + "/chat/completions", content=b"{").status_code == 400
    finally:
        assert srv.stop(signal.SIGTERM) == 0, "".join(srv.log)


def test_serve_refuses_a_missing_model_before_listening(tmp_path):
    import subprocess

    from test_server_support import cli_command

    r = subprocess.run(cli_command("serve", "--model", str(tmp_path / "nope"), "--port", "0"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "No model folder" in r.stderr
    r = subprocess.run(cli_command("serve", "--model", str(tmp_path), "--allow-local-files", str(tmp_path / "x")),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--allow-local-files" in r.stderr
    r = subprocess.run(cli_command("serve", "--model", str(tmp_path), "--max-tokens", "10", "--max-tokens-limit", "8"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--max-tokens-limit" in r.stderr


def test_load_error_is_not_on_the_open_health_with_a_key(broken_model):
    srv = ServerProcess(broken_model, "--api-key", KEY, wait_ready=False)
    try:
        health = srv.wait_health(503)
        assert set(health) == {"status", "model_loaded", "device", "uptime_s"} and health["status"] == "error"
        assert httpx.get(srv.url + "/stats").status_code == 401
        stats = httpx.get(srv.url + "/stats", headers={"Authorization": f"Bearer {KEY}"}).json()
        assert stats["status"] == "error" and "Error" in stats["error"]
    finally:
        assert srv.stop() == 0, "".join(srv.log)


def test_image_data_uri_on_a_vision_model(request):
    try:
        vision_model = request.getfixturevalue("vision_model")
    except pytest.FixtureLookupError:
        pytest.skip("no vision_model fixture yet (tests/conftest.py)")
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 120, 200)).save(buf, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    srv = ServerProcess(vision_model, "--allow-private-urls")  # the image URL below is on loopback
    try:
        with openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0) as client:
            content = [{"type": "text", "text": "What is in the image?"}, {"type": "image_url", "image_url": {"url": uri}}]
            r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": content}],
                                               max_tokens=6, temperature=0)
            assert r.usage.completion_tokens >= 1 and isinstance(r.choices[0].message.content, str)
            stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": content}],
                                                    max_tokens=6, temperature=0, stream=True)
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == r.choices[0].message.content
            bad = [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
            with pytest.raises(openai.BadRequestError):
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": bad}], max_tokens=2)
            r2 = client.chat.completions.create(model="m", messages=[{"role": "user", "content": content}],
                                                max_tokens=6, temperature=0)
            assert r2.choices[0].message.content == r.choices[0].message.content
            # the same image from an http:// URL (a loopback file server) gives the same reply
            with _http_file_server(buf.getvalue()) as url:
                via_url = [content[0], {"type": "image_url", "image_url": {"url": url}}]
                r3 = client.chat.completions.create(model="m", messages=[{"role": "user", "content": via_url}],
                                                    max_tokens=6, temperature=0)
            assert r3.choices[0].message.content == r.choices[0].message.content
            # a failed fetch is a 400 with one generic message: nothing about the status or the port
            with _http_file_server(buf.getvalue(), status=404) as url:
                missing = _image_request(srv, url)
            closed = _image_request(srv, url)  # that server is gone: its port is closed
            for resp in (missing, closed):
                assert resp.status_code == 400 and resp.json()["error"]["code"] == "url_fetch_failed", resp.text
                assert resp.json()["error"]["message"] == "The image URL could not be fetched."
    finally:
        assert srv.stop() == 0, "".join(srv.log)


class _http_file_server:
    """Serve ``data`` at http://HOST:PORT/image.png in a thread (answering ``status``; a ``redirect``
    URL is answered 302 to it); ``.requests`` lists the paths asked for."""

    def __init__(self, data: bytes, status: int = 200, host: str = "127.0.0.1", redirect: str | None = None) -> None:
        self.data, self.status, self.host, self.redirect = data, status, host, redirect
        self.requests: list[str] = []

    def __enter__(self) -> str:
        import http.server
        import threading

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.requests.append(self.path)
                if outer.redirect:
                    self.send_response(302)
                    self.send_header("Location", outer.redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(outer.status)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(outer.data)))
                self.end_headers()
                self.wfile.write(outer.data)

            def log_message(self, *args):
                pass

        import socket

        class Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in self.host else socket.AF_INET

        self.httpd = Server((self.host, 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.httpd.server_address[1]}/image.png"

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_request_over_the_memory_budget_is_507(vision_model):
    """A huge (but well compressed) image on a server with a small --memory-limit: refused before any
    pixel is decoded, answered 507, and the server keeps serving."""
    import base64
    import io

    from PIL import Image

    def uri(size: int) -> str:
        buf = io.BytesIO()
        Image.new("RGB", (size, size), (1, 2, 3)).save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    srv = ServerProcess(vision_model, "--memory-limit", "128MB")
    try:
        with openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0) as client:
            def ask(size: int):
                content = [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": uri(size)}}]
                return client.chat.completions.create(model="m", messages=[{"role": "user", "content": content}],
                                                      max_tokens=2, temperature=0)

            with pytest.raises(openai.APIStatusError) as info:
                ask(8000)
            assert info.value.status_code == 507
            assert info.value.body["type"] == "insufficient_memory" and "memory_limit" in info.value.body["message"]
            assert ask(16).usage.completion_tokens == 2
    finally:
        assert srv.stop() == 0, "".join(srv.log)
