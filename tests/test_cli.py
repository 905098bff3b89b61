"""The ``abstractllm`` command line, every command driven in a subprocess on the tiny offline models.
Generated text is compared with the library's own greedy generation on the same model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("mlx", "mlx.core", "mlx_lm", "mlx_vlm", "fastapi", "uvicorn", "starlette", "numpy", "PIL", "transformers",
         "anthropic", "openai", "prometheus_client")


def run_cli(*args: str, stdin: str | None = None, env: dict | None = None, timeout: float = 120):
    environ = dict(os.environ)
    environ.pop("ABSTRACTLLM_MODEL", None)
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "abstractllm.cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout, env=environ)


def test_help_and_import_stay_light():
    code = ("import sys\nfrom abstractllm.cli import main\n"
            "for argv in (['--help'], ['generate', '--help'], ['serve', '--help'], ['chat', '--help'],"
            " ['models', '--help'], ['demo', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0, argv\n"
            "import abstractllm.server, abstractllm.server.config\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    assert "generate" in r.stdout and "--allow-local-files" in r.stdout and "--preset" in r.stdout


def test_console_script_runs():
    script = Path(sys.executable).parent / "abstractllm"
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("abstractllm ")
    r = subprocess.run([str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "COMMAND" in r.stdout


def test_generate_streams_the_greedy_reply(tiny_model, tiny_llm):
    expected = tiny_llm.generate("Tell me a story.", system_prompt="Be brief.", temperature=0.0, max_tokens=12)
    r = run_cli("generate", "Tell me a story.", "--model", str(tiny_model), "--system", "Be brief.",
                "-t", "0", "-m", "12")
    assert r.returncode == 0, r.stderr
    assert r.stdout == expected.content + "\n"
    r = run_cli("generate", "Tell me a story.", "--model", str(tiny_model), "-t", "0", "-m", "12", "--stats")
    assert "12 generated tokens" in r.stderr and "finish: length" in r.stderr


def test_generate_json_output_file_and_stdin(tiny_model, tiny_llm, tmp_path):
    expected = tiny_llm.generate("Hello there", temperature=0.0, max_tokens=9)
    r = run_cli("generate", "Hello there", "--model", str(tiny_model), "-t", "0", "-m", "9", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["content"] == expected.content and data["token_ids"] == expected.token_ids
    assert data["usage"]["completion_tokens"] == 9 and data["finish_reason"] == "length"
    out = tmp_path / "reply.txt"
    r = run_cli("generate", "-", "--model", str(tiny_model), "-t", "0", "-m", "9", "-o", str(out),
                stdin="Hello there")
    assert r.returncode == 0 and r.stdout == ""
    assert out.read_text(encoding="utf-8") == expected.content and "wrote" in r.stderr


def test_generate_sampling_options_and_env_model(tiny_model, tiny_llm):
    expected = tiny_llm.generate("Count", temperature=1.2, top_p=0.9, top_k=50, seed=11, max_tokens=10)
    args = ("generate", "Count", "-t", "1.2", "--top-p", "0.9", "--top-k", "50", "--seed", "11", "-m", "10")
    r = run_cli(*args, env={"ABSTRACTLLM_MODEL": str(tiny_model)})  # the default model
    assert r.returncode == 0, r.stderr
    assert r.stdout == expected.content + "\n"
    stop_base = tiny_llm.generate("Count", temperature=0.0, max_tokens=16).content
    stop = stop_base[4:6]
    expected = tiny_llm.generate("Count", temperature=0.0, max_tokens=16, stop=[stop])
    r = run_cli("generate", "Count", "--model", str(tiny_model), "-t", "0", "-m", "16", "--stop", stop)
    assert r.returncode == 0 and r.stdout == expected.content + "\n"


def test_generate_load_options(tiny_model, tiny_llm):
    expected = tiny_llm.generate("Hi", temperature=0.0, max_tokens=5)
    r = run_cli("generate", "Hi", "--model", str(tiny_model), "-t", "0", "-m", "5", "--full-precision", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["content"] == expected.content
    r = run_cli("generate", "Hi", "--model", str(tiny_model), "-t", "0", "-m", "5", "--quantize", "8", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["usage"]["completion_tokens"] == 5  # stdout is pure JSON (load prints go to stderr)


@pytest.mark.parametrize("args, code, needle", [
    (("generate", "hi"), 2, "ABSTRACTLLM_MODEL"),
    (("generate", "hi", "--model", "/no/such/model"), 1, "No model folder"),
    (("generate", "hi", "--model", "{model}", "-t", "-1"), 1, "temperature"),
    (("generate", "hi", "--model", "{model}", "--image", "/no/such.png"), 1, "no such file"),
    (("generate", "hi", "--model", "{model}", "--image", "{model}/config.json"), 1, "text-only"),
    (("generate", "hi", "--model", "{model}", "--quantize", "4", "--full-precision"), 2, "exclude"),
    (("generate", "hi", "--model", "{model}", "-m", "0"), 2, "positive integer"),
    (("generate", "hi", "--model", "{model}", "--memory-limit", "1KB"), 1, "memory_limit"),
    (("generate", "hi", "--model", "{model}", "--memory-limit", "lots"), 1, "memory_limit"),
    (("demo", "--preset", "nonsense"), 2, "preset"),
    (("models", "/no/such/folder"), 1, "not a folder"),
    (("serve", "--model", "{model}", "--max-concurrency", "4", "--max-queue-size", "2"), 2, "not both"),
    (("serve", "--model", "{model}", "--max-concurrency", "2", "--max-batch-size", "4"), 2, "below the batch size"),
    (("serve", "--model", "{model}", "--max-n", "0"), 2, "positive integer"),
])
def test_errors_are_one_line_with_exit_codes(tiny_model, args, code, needle):
    r = run_cli(*(a.format(model=tiny_model) for a in args))
    assert r.returncode == code, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert needle in lines[-1] and "Traceback" not in r.stderr
    if code == 1:
        assert len(lines) == 1 and lines[0].startswith("abstractllm: error: ")


def test_chat_keeps_history_and_commands(tiny_model, tiny_llm):
    first = tiny_llm.generate(messages=[{"role": "user", "content": "Hello"}], temperature=0.0, max_tokens=8)
    history = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": first.content},
               {"role": "user", "content": "And then?"}]
    second = tiny_llm.generate(messages=history, temperature=0.0, max_tokens=8)
    fresh = tiny_llm.generate(messages=[{"role": "user", "content": "And then?"}], temperature=0.0, max_tokens=8)
    assert second.content != fresh.content  # the history changes the reply
    script = "Hello\nAnd then?\n/image {m}/config.json\n/help\n/bogus\n/reset\nAnd then?\n/exit\nnever sent\n"
    r = run_cli("chat", "--model", str(tiny_model), "-t", "0", "-m", "8", "--stats",
                stdin=script.format(m=tiny_model))
    assert r.returncode == 0, r.stderr
    footers = [ln for ln in r.stderr.splitlines() if ln.startswith("[")]
    assert len(footers) == 3 and "cached" not in footers[0] and "cached" in footers[1]  # turn 2 reused turn 1
    out = r.stdout
    assert f"assistant> {first.content}\n" in out
    assert f"assistant> {second.content}\n" in out
    assert out.index(second.content) < out.index("(conversation reset)") < out.rindex(f"assistant> {fresh.content}\n")
    assert "text-only" in out and "commands: /image PATH" in out and "unknown command /bogus" in out
    assert "never sent" not in out


def test_chat_image_on_a_vision_model(vision_model, tmp_path):
    from PIL import Image

    img = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (220, 20, 20)).save(img)
    from abstractllm import create_llm

    with create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=6) as llm:
        expected = llm.generate("What is it?", files=[str(img)]).content
    script = f"/image {tmp_path}/missing.png\n/image {img}\nWhat is it?\n/exit\n"
    r = run_cli("chat", "--model", str(vision_model), "-t", "0", "-m", "6", stdin=script)
    assert r.returncode == 0, r.stderr
    assert "no such file" in r.stdout and "(image attached" in r.stdout
    assert f"assistant> {expected}\n" in r.stdout


def _fake_hf_cache(root: Path, tiny_model: Path) -> Path:
    """The hub cache layout: models--org--name/{refs/main, snapshots/<commit>/...}, files as symlinks."""
    hub = root / "hub"
    repo = hub / "models--test-org--tiny-4bit"
    blobs, snap = repo / "blobs", repo / "snapshots" / "abc123"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    for f in tiny_model.iterdir():
        blob = blobs / f"blob-{f.name}"
        if f.name == "config.json":
            cfg = json.loads(f.read_text())
            cfg["quantization"] = {"group_size": 64, "bits": 4}
            blob.write_text(json.dumps(cfg))
        else:
            shutil.copy(f, blob)
        os.symlink(blob, snap / f.name)
    (hub / "models--org--not-a-model" / "snapshots" / "x").mkdir(parents=True)
    return hub


def test_models_lists_hf_cache_and_folders(tiny_model, llama_model, vision_model, tmp_path):
    hub = _fake_hf_cache(tmp_path / "hf", tiny_model)
    folder = tmp_path / "my-models"
    folder.mkdir()
    shutil.copytree(llama_model, folder / "llama-copy")
    shutil.copytree(vision_model, folder / "vision-copy")
    (folder / "notes").mkdir()
    r = run_cli("models", str(folder), env={"HF_HUB_CACHE": str(hub)})
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:]}
    assert set(rows) == {"test-org/tiny-4bit", "llama-copy", "vision-copy"}
    assert rows["test-org/tiny-4bit"][1:2] == ["text"] and "4-bit" in rows["test-org/tiny-4bit"]
    assert rows["llama-copy"][1] == "text" and "none" in rows["llama-copy"] and "llama" in rows["llama-copy"]
    assert rows["vision-copy"][1] == "vision"
    r = run_cli("models", "--json", env={"HF_HOME": str(tmp_path / "hf")})  # HF_HOME/hub
    entries = json.loads(r.stdout)
    assert [e["name"] for e in entries] == ["test-org/tiny-4bit"]
    size = sum(f.stat().st_size for f in tiny_model.glob("*.safetensors"))
    assert entries[0]["size_bytes"] == size and entries[0]["source"] == "hf-cache"
    r = run_cli("models", "--no-cache", str(tmp_path / "hf"))
    assert r.returncode == 0 and "No MLX models found" in r.stdout


def test_demo_streams_and_says_the_text_is_gibberish():
    r = run_cli("demo", "--max-tokens", "12", "--prompt", "Hi there")
    assert r.returncode == 0, r.stderr
    assert "random" in r.stderr.lower() and "gibberish" in r.stderr.lower()
    assert "12 generated tokens" in r.stderr and r.stdout.strip()
    assert "\nBLAS: OpenBLAS " in r.stderr  # which float32 matmul library MLX uses (active or why not)
    again = run_cli("demo", "--max-tokens", "12", "--prompt", "Hi there")
    assert again.stdout == r.stdout  # seeded: the same text each run
    r = run_cli("demo", "--preset", "llama-tiny", "-m", "4", "-t", "0")
    assert r.returncode == 0 and "4 generated tokens" in r.stderr


def test_generate_with_an_image_on_a_vision_model(vision_model, tmp_path):
    from PIL import Image

    from abstractllm import create_llm

    img = tmp_path / "blue.png"
    Image.new("RGB", (24, 24), (10, 20, 230)).save(img)
    with create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=6) as llm:
        expected = llm.generate("Describe.", files=[str(img)])
    r = run_cli("generate", "Describe.", "--model", str(vision_model), "--image", str(img), "-t", "0", "-m", "6",
                "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["content"] == expected.content and data["token_ids"] == expected.token_ids


class ChatProcess:
    """``abstractllm chat`` in a subprocess, its stdout read as it comes; every wait is on what the
    output shows (no fixed sleeps), with a generous deadline for a loaded machine."""

    def __init__(self, model, *args: str, ignore_sigint: bool = False) -> None:
        import signal
        import threading

        argv = [sys.executable, "-m", "abstractllm.cli", "chat", "--model", str(model), "-t", "0", *args]
        # ignore_sigint: the process inherits SIGINT as ignored, as a background job of a non-interactive
        # shell (or some CI runners) does; the chat must still honour Ctrl-C.
        pre = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, preexec_fn=pre)
        self._out: list[str] = []
        self._reader = threading.Thread(target=lambda: self._out.extend(iter(lambda: self.proc.stdout.read(1), "")),
                                        daemon=True)
        self._reader.start()

    @property
    def out(self) -> str:
        return "".join(self._out)

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_for(self, predicate, what: str, timeout: float = 90) -> None:
        import time

        deadline = time.monotonic() + timeout
        while not predicate(self.out):
            assert self.proc.poll() is None or predicate(self.out), f"chat exited ({self.proc.returncode}) before {what}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}; output tail: {self.out[-300:]!r}"
            time.sleep(0.02)

    def wait_streaming(self) -> None:
        """Until the reply is visibly streaming: text keeps arriving after 'assistant> '."""
        self.wait_for(lambda o: "assistant> " in o and len(o) - o.rindex("assistant> ") > 20, "the reply to stream")
        mark = len(self.out)
        self.wait_for(lambda o: len(o) > mark + 5, "more streamed text")

    def interrupt(self) -> None:
        import signal

        self.proc.send_signal(signal.SIGINT)

    def finish(self, timeout: float = 90) -> int:
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._reader.join(10)
        return self.proc.returncode


@pytest.mark.parametrize("ignore_sigint", [False, True], ids=["default", "inherited_sigint_ignored"])
def test_ctrl_c_stops_the_reply_not_the_chat(tiny_model, ignore_sigint):
    chat = ChatProcess(tiny_model, "-m", "1000000", ignore_sigint=ignore_sigint)
    chat.send("tell me everything")
    chat.wait_streaming()  # a million tokens, no EOS: still streaming when the signal lands
    chat.interrupt()
    chat.wait_for(lambda o: "(interrupted)" in o, "the reply to stop")
    chat.send("/reset")  # the chat is still alive and answers commands
    chat.wait_for(lambda o: "(conversation reset)" in o, "the next command")
    chat.send("/exit")
    assert chat.finish() == 0, chat.proc.stderr.read()[-2000:]
    assert chat.out.count("(interrupted)") == 1


def test_ctrl_c_before_the_first_token(tiny_model):
    """Ctrl-C right after the line is sent lands while it is read, templated or prefilled (a long prompt):
    the reply stops before or at its first tokens, and the chat goes on."""
    chat = ChatProcess(tiny_model, "-m", "1000000")
    chat.send(" ".join(["history"] * 1500))
    chat.wait_for(lambda o: "assistant> " in o, "the reply to start")
    chat.interrupt()
    chat.wait_for(lambda o: "(interrupted)" in o, "the reply to stop")
    chat.send("/help")
    chat.wait_for(lambda o: "commands:" in o, "the next command")
    chat.send("/exit")
    assert chat.finish() == 0, chat.proc.stderr.read()[-2000:]


def test_ctrl_c_pressed_repeatedly_stops_one_reply(tiny_model):
    chat = ChatProcess(tiny_model, "-m", "1000000")
    chat.send("tell me everything")
    chat.wait_streaming()
    for _ in range(4):  # back to back: each lands somewhere in the reply, its cancel, or its last chunk
        chat.interrupt()
    chat.wait_for(lambda o: "(interrupted)" in o, "the reply to stop")
    chat.send("/reset")
    chat.wait_for(lambda o: "(conversation reset)" in o, "the next command")
    chat.send("/exit")
    assert chat.finish() == 0, chat.proc.stderr.read()[-2000:]
    assert chat.out.count("(interrupted)") == 1


def test_ctrl_c_at_the_prompt_leaves(tiny_model):
    chat = ChatProcess(tiny_model, "-m", "3")
    chat.send("hello")
    chat.send("/help")  # printed once the reply is done and the chat reads its next line
    chat.wait_for(lambda o: "commands:" in o, "the reply and the next command")
    chat.interrupt()  # the chat now waits at the prompt: Ctrl-C leaves, with code 0
    assert chat.finish() == 0, chat.proc.stderr.read()[-2000:]
    assert "(interrupted)" not in chat.out


def test_ctrl_c_as_a_reply_ends_never_hangs(tiny_model):
    """The hand-off between a reply and the prompt: whichever side the signal lands on, the chat either
    stops the reply or leaves, and always exits with code 0."""
    import time

    chat = ChatProcess(tiny_model, "-m", "40")
    chat.send("count")
    chat.wait_for(lambda o: "assistant> " in o, "the reply to start")
    mark = len(chat.out)
    chat.wait_for(lambda o: len(o) > mark, "the first text")
    time.sleep(0.05)  # somewhere around the end of a 40-token reply on the tiny model
    chat.interrupt()
    if chat.proc.poll() is None:
        chat.send("/exit")
    assert chat.finish() == 0, chat.proc.stderr.read()[-2000:]


def test_serve_refuses_a_keep_alive_interval_that_is_not_positive():
    r = run_cli("serve", "--model", "unused", "--sse-ping", "0")
    assert r.returncode == 2 and "--sse-ping must be a positive number" in r.stderr and "Traceback" not in r.stderr
