"""Distributed mode on one machine: two ranks over loopback (MLX's ring backend), the offline ``small``
models in the Qwen3 and Llama shapes.

- SPMD under ``mlx.launch``: greedy replies (one at a time and batched) equal the single-process ones on
  both ranks, tensor parallelism (Qwen3, Llama) and pipeline parallelism (a Qwen2-shaped small model); a
  sampled reply without a seed is the same on both ranks; rank 0's cancellation reaches the other rank;
  each rank holds half of the sharded weights (measured: MLX's active memory after the load), so a memory
  limit too small for one process loads on two; unsupported combinations raise ``UnsupportedFeatureError``
  on every rank, a memory limit only rank 1 cannot meet fails both ranks; ``close()`` exits 0 everywhere.
- ``abstractllm serve --distributed`` under ``mlx.launch``: the official openai client gets the
  single-process reply; ``/health`` and ``/stats`` show both ranks' memory; a rank that stops answering
  (SIGSTOP) ends rank 0 through the watchdog within ``--distributed-timeout``.
- Two ranks started by hand (as mlx.launch starts them, so nothing kills the survivor for us): killing
  rank 1 stops rank 0's server with a clear error within seconds.
- Alone (no mlx.launch): a clear error naming mlx.launch.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from abstractllm import MemoryLimitError, UnsupportedFeatureError, create_llm

from distributed_spmd import MAX_TOKENS, MEMORY_LIMIT, PROMPTS
from test_server_support import ServerProcess, cli_command

ROOT = Path(__file__).resolve().parent.parent
SPMD = Path(__file__).with_name("distributed_spmd.py")


# ---------------------------------------------------------------------------------------------- helpers
def _launcher() -> str:
    exe = Path(sys.executable).with_name("mlx.launch")
    found = str(exe) if exe.exists() else shutil.which("mlx.launch")
    if not found:
        pytest.skip("mlx.launch is not installed")
    return found


def _free_port_pair() -> int:
    """A port P with P and P+1 free on loopback (the ring backend listens on one port per rank)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base >= 65535:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", base))
                b.bind(("127.0.0.1", base + 1))
            return base
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


#: in the environment of every process these tests start: what is left of them is found and killed
TAG = f"abstractllm-distributed-test-{os.getpid()}"


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT), "PYTHONUNBUFFERED": "1",
            "ABSTRACTLLM_TEST_TAG": TAG}


@pytest.fixture(autouse=True)
def _no_rank_left_behind():
    """After each test, kill the processes it started that are still there (a rank whose mlx.launch was
    killed, a stopped rank), found by the tag in their environment."""
    yield
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get("ABSTRACTLLM_TEST_TAG") == TAG:
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass


def _launch(*command: str) -> list[str]:
    return [_launcher(), "--backend", "ring", "-n", "2", "--starting-port", str(_free_port_pair()), "--", *command]


def _kill_tree(pid: int) -> None:
    """Kill ``pid`` and every process under it (mlx.launch's ranks must not outlive a failed test)."""
    try:
        parent = psutil.Process(pid)
        procs = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)


def _run(argv: list[str], timeout: float) -> str:
    """Run ``argv`` to its end (killing it and its children past ``timeout``); its output."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        out, _ = proc.communicate()
        out += f"\n--- killed after {timeout} s"
    return out


def _single_process(model: Path) -> tuple[list[list[int]], int]:
    """Greedy token ids of ``PROMPTS`` and the bytes the load added to MLX's active memory, one process."""
    import mlx.core as mx

    with create_llm("mlx", model=str(model), temperature=0.0, max_tokens=MAX_TOKENS) as llm:
        before = mx.get_active_memory()
        llm.load()
        loaded = mx.get_active_memory() - before
        return [llm.generate(p).token_ids for p in PROMPTS], loaded


def _shard_bytes(model: Path, mode: str) -> tuple[int, int]:
    """(bytes the ranks split evenly, bytes every rank keeps whole) of a float32 checkpoint: tensor
    parallelism splits the layers' projections, pipeline parallelism the layers (of an even count);
    every rank keeps the embeddings, the head and the final norm."""
    import mlx.core as mx

    split = whole = 0
    for name, value in mx.load(str(model / "model.safetensors")).items():
        if ".layers." in name and (mode == "pipeline" or name.endswith("proj.weight")):
            split += value.nbytes
        else:
            whole += value.nbytes
    return split, whole


@pytest.fixture(scope="module")
def small_models(tmp_path_factory):
    from abstractllm.testing import build_text_model, demo_model

    qwen2 = build_text_model(tmp_path_factory.mktemp("qwen2") / "small-qwen2", "small",
                             overrides={"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]})
    return {"qwen3": demo_model("text", "small"), "llama": demo_model("text", "llama-small"), "qwen2": qwen2}


# ---------------------------------------------------------------------------------------------- alone
def test_distributed_alone_names_mlx_launch(tiny_model):
    for _ in range(2):  # the same answer again: a failed creation holds nothing
        with pytest.raises(UnsupportedFeatureError, match="mlx.launch"):
            create_llm("mlx", model=str(tiny_model), distributed="tensor")
    with create_llm("mlx", model=str(tiny_model)) as llm, pytest.raises(UnsupportedFeatureError, match="created"):
        llm.update_config({"distributed": "auto"})
    from abstractllm.providers.mlx import MLXProvider

    with pytest.raises(UnsupportedFeatureError, match="create_llm"):  # chosen by the factory, not the class
        MLXProvider(model=str(tiny_model), distributed="tensor")


def test_serve_distributed_alone_fails_in_one_line(tiny_model):
    out = subprocess.run(cli_command("serve", "--model", str(tiny_model), "--distributed", "--port", "0"),
                         capture_output=True, text=True, timeout=120, env=_env())
    assert out.returncode == 1 and "mlx.launch" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run(cli_command("serve", "--model", str(tiny_model), "--distributed-timeout", "5"),
                         capture_output=True, text=True, timeout=120, env=_env())
    assert out.returncode == 2 and "--distributed" in out.stderr


# ---------------------------------------------------------------------------------------------- SPMD
def test_spmd_two_ranks_equal_one_process_with_half_the_weights(small_models, vision_model, tmp_path):
    runs = [("tensor", small_models["qwen3"]), ("tensor", small_models["llama"]), ("pipeline", small_models["qwen2"])]
    log = _run(_launch(sys.executable, str(SPMD), str(tmp_path), str(vision_model),
                       *(f"{mode}:{model}" for mode, model in runs)), timeout=400)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1) if (tmp_path / f"rank{r}.json").exists()]
    assert len(ranks) == 2, log
    assert "exited with code" not in log and "was killed" not in log, log  # close() exits 0 on every rank
    for mode, model in runs:
        single, single_bytes = _single_process(model)
        split, whole = _shard_bytes(model, mode)
        assert abs(single_bytes - (whole + split)) < 0.02 * single_bytes
        with pytest.raises(MemoryLimitError):  # the limit the ranks loaded under is too small for one process
            create_llm("mlx", model=str(model), memory_limit=MEMORY_LIMIT).load()
        for rank, r in enumerate(ranks):
            got = r["models"][str(model)]
            assert got["rank"] == rank and got["world_size"] == 2 and got["closed"]
            assert got["info"] == {"world_size": 2, "rank": rank, "distributed": mode,
                                   "weights_bytes": whole + split // 2}
            assert got["alone"] == single, (model.name, rank)  # greedy: identical to one process
            assert got["batched"] == single, (model.name, rank)  # batching works across ranks too
            # measured: what the load added to MLX's memory is this rank's shard, about half of one process
            assert abs(got["active_after_load"] - (whole + split // 2)) < 0.02 * single_bytes
            assert got["active_after_load"] < 0.66 * single_bytes
    a, b = (r["models"][str(small_models["qwen3"])] for r in ranks)
    assert a["sampled"] == b["sampled"] and len(a["sampled"]) == MAX_TOKENS  # no seed: the same draw
    assert a["cancelled"] == b["cancelled"] and a["cancelled"]["finish_reason"] == "cancelled"
    assert [r["rank"] for r in a["status"]["ranks"]] == [0, 1] and a["status"]["mode"] == "tensor"
    assert all(r["weights_bytes"] == a["info"]["weights_bytes"] for r in a["status"]["ranks"])
    for r in ranks:
        assert r["pipeline_error"]["type"] == "UnsupportedFeatureError"
        assert "pipeline parallelism for" in r["pipeline_error"]["message"]
        assert "qwen2" in r["pipeline_error"]["message"]
        assert r["vision_error"]["type"] == "UnsupportedFeatureError"
        assert "vision" in r["vision_error"]["message"]
    assert ranks[1]["memory_error"]["type"] == "MemoryLimitError" and "rank 1" in ranks[1]["memory_error"]["message"]
    assert ranks[0]["memory_error"]["type"] == "ModelLoadError" and "rank 1" in ranks[0]["memory_error"]["message"]
    assert all(r["second_error"]["type"] == "UnsupportedFeatureError" for r in ranks)
    assert "One distributed provider per process" in ranks[0]["second_error"]["message"]


# ---------------------------------------------------------------------------------------------- server
def _rank_pids(srv: ServerProcess) -> list[int]:
    return [r["pid"] for r in srv.stats()["distributed"]["ranks"]]


def _wait_gone(pid: int, timeout: float) -> bool:
    """True once ``pid`` has exited (a zombie waiting for its parent to reap it counts as exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def _kill_all(pids: list[int], srv: ServerProcess) -> None:
    for pid in pids:  # the ranks (a stopped one too), then mlx.launch and anything left under it
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _kill_tree(srv.proc.pid)
    srv.stop(signal.SIGKILL, timeout=30)


def _wait_ranks(srv: ServerProcess, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = httpx.get(srv.url + "/health", timeout=10).json()
        if len(health["distributed"]["ranks"]) == 2:
            return health
        time.sleep(0.2)
    raise AssertionError(f"no memory of every rank in /health: {health}")


def test_server_under_mlx_launch_answers_openai_and_a_stopped_rank_ends_it(small_models):
    model = small_models["qwen3"]
    with create_llm("mlx", model=str(model), temperature=0.0, max_tokens=MAX_TOKENS) as llm:
        expected, expected_2 = (llm.generate(p).content for p in PROMPTS)
    timeout = 8
    argv = _launch(*cli_command("serve", "--model", str(model), "--host", "127.0.0.1", "--port", "0",
                                "--distributed", "tensor", "--distributed-timeout", str(timeout)))
    srv = ServerProcess(None, argv=argv, env=_env())
    pids: list[int] = []
    try:
        health = _wait_ranks(srv)
        assert health["status"] == "ok" and health["distributed"]["world_size"] == 2
        assert health["distributed"]["mode"] == "tensor"
        pids = _rank_pids(srv)
        assert len(set(pids)) == 2
        with openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0, timeout=120) as client:
            reply = client.chat.completions.create(model="small", messages=[{"role": "user", "content": PROMPTS[0]}],
                                                   max_tokens=MAX_TOKENS, temperature=0)
            assert reply.choices[0].message.content == expected
            streamed = client.chat.completions.create(model="small", max_tokens=MAX_TOKENS, temperature=0, stream=True,
                                                      messages=[{"role": "user", "content": PROMPTS[0]}])
            assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected
            with ThreadPoolExecutor(2) as pool:  # two clients at once: batched together on both ranks
                replies = list(pool.map(lambda p: client.chat.completions.create(
                    model="small", messages=[{"role": "user", "content": p}], max_tokens=MAX_TOKENS, temperature=0),
                    PROMPTS))
            assert [r.choices[0].message.content for r in replies] == [expected, expected_2]
        stats = srv.stats()
        ranks = stats["distributed"]["ranks"]
        assert [r["rank"] for r in ranks] == [0, 1] and all(r["mlx_active"] > 0 and r["weights_bytes"] for r in ranks)
        # rank 1 stops answering without closing its connections: rank 0's watchdog ends it
        os.kill(pids[1], signal.SIGSTOP)
        t0 = time.monotonic()
        assert _wait_gone(pids[0], timeout + 20), "".join(srv.log)
        assert time.monotonic() - t0 < timeout + 20
        time.sleep(0.5)
        assert "distributed_timeout" in "".join(srv.log), "".join(srv.log)
    finally:
        _kill_all(pids, srv)


def test_killing_rank_1_stops_the_server_with_a_clear_error(small_models, tmp_path):
    """The ranks started as mlx.launch starts them (MLX_HOSTFILE, MLX_RANK), but by this test: nothing else
    kills rank 0 when rank 1 dies."""
    base = _free_port_pair()
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps([[f"127.0.0.1:{base}"], [f"127.0.0.1:{base + 1}"]]))
    argv = cli_command("serve", "--model", str(small_models["llama"]), "--host", "127.0.0.1", "--port", "0",
                       "--distributed", "--distributed-timeout", "120")
    follower = subprocess.Popen(argv, env={**_env(), "MLX_RANK": "1", "MLX_HOSTFILE": str(hostfile)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv = ServerProcess(None, argv=argv, env={"PYTHONPATH": _env()["PYTHONPATH"], "MLX_RANK": "0",
                                              "MLX_HOSTFILE": str(hostfile), "ABSTRACTLLM_TEST_TAG": TAG})
    try:
        _wait_ranks(srv)
        follower.kill()
        t0 = time.monotonic()
        code = srv.proc.wait(timeout=60)
        elapsed = time.monotonic() - t0
        log = "".join(srv.log)
        assert code == 1, log
        assert elapsed < 20, (elapsed, log)  # noticed within a heartbeat, then a graceful shutdown
        assert "lost its connection" in log and "stopping the server" in log, log
    finally:
        follower.kill()
        srv.stop(signal.SIGKILL)


# ---------------------------------------------------------------------------------------------- pieces
def test_a_request_travels_without_its_python_function_or_class():
    """What rank 0 sends the others pickles: the tools' schemas without their functions, the
    response_format's schema without its pydantic class (each rank's caller parses its own reply)."""
    import pickle

    from pydantic import BaseModel

    from abstractllm.providers.mlx.ranks import wire_request
    from abstractllm.structured import normalize_response_format
    from abstractllm.tools import function_to_tool_definition
    from abstractllm.types import GenerationRequest, Message

    class City(BaseModel):
        name: str

    def weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    tool = function_to_tool_definition(weather)
    request = GenerationRequest([Message("user", "Hi")], {"temperature": 0.0, "seed": 3,
                                                          "response_format": normalize_response_format(City)},
                                tools=[tool])
    with pytest.raises(Exception):
        pickle.dumps(request)  # a local class and a function cannot travel
    back = pickle.loads(pickle.dumps(wire_request(request)))
    assert back.messages[0].text == "Hi" and back.params["seed"] == 3
    assert back.tools[0].to_openai() == tool.to_openai() and back.tools[0].function is None
    assert back.params["response_format"].schema == request.params["response_format"].schema
    assert request.tools[0].function is weather  # the caller's request is untouched


def test_pairing_gives_each_call_the_leaders_request_of_its_number():
    """A non-zero rank's calls get rank 0's requests in call order, whether the call comes before or after
    rank 0's output; after the group stops, waiting and new calls get the error."""
    import queue

    from abstractllm.providers.mlx.ranks import Pairing

    pairs = Pairing()
    first, second, third = queue.SimpleQueue(), queue.SimpleQueue(), queue.SimpleQueue()
    pairs.local(first.put)
    pairs.emit_for(1)(("item", "a"))
    pairs.emit_for(2)(("item", "b"))  # before its call: kept
    pairs.emit_for(1)(("done", None))
    pairs.local(second.put)
    pairs.emit_for(2)(("done", None))
    assert [first.get_nowait(), first.get_nowait()] == [("item", "a"), ("done", None)]
    assert [second.get_nowait(), second.get_nowait()] == [("item", "b"), ("done", None)]
    pairs.local(third.put)
    pairs.close(RuntimeError("stopped"))
    assert third.get_nowait()[0] == "error"
    late = queue.SimpleQueue()
    pairs.local(late.put)
    assert late.get_nowait()[0] == "error"
