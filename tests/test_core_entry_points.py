"""Third-party providers register through the ``abstractllm.providers`` entry-point group: a real
distribution (dist-info with entry_points.txt) is put on sys.path and discovered by importlib.metadata."""

from __future__ import annotations

import sys
import textwrap

import pytest

from abstractllm import available_providers, create_llm


@pytest.fixture()
def echo_distribution(tmp_path, monkeypatch):
    (tmp_path / "echo_provider_pkg.py").write_text(textwrap.dedent(
        """
        from abstractllm.providers.base import BaseProvider
        from abstractllm.enums import ModelCapability
        from abstractllm.types import Response, Usage

        class EchoProvider(BaseProvider):
            name = "echo"

            def get_capabilities(self):
                return frozenset({ModelCapability.TEXT, ModelCapability.STREAMING, ModelCapability.SYSTEM_PROMPT})

            def _stream(self, request, cancel):
                text = request.messages[-1].text
                for word in text.split(" "):
                    yield Response(content=word + " ")
                yield Response(finish_reason="stop", usage=Usage(1, len(text.split(" ")), 0, 0))
        """
    ))
    dist = tmp_path / "echo_provider_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-provider-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[abstractllm.providers]\necho = echo_provider_pkg:EchoProvider\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("echo_provider_pkg", None)


def test_entry_point_provider_is_discovered_and_used(echo_distribution):
    assert "echo" in available_providers()
    llm = create_llm("echo", model="anything")
    assert llm.generate("hello entry points").content == "hello entry points "
    assert [c.content for c in llm.generate("a b", stream=True)][:2] == ["a ", "b "]
    llm.close()


def test_register_provider_by_class():
    from abstractllm import register_provider
    from abstractllm.registry import _REGISTERED

    class Dummy:
        def __init__(self, **config):
            self.config = config

    register_provider("dummy-test", Dummy)
    try:
        assert create_llm("dummy-test", x=1).config == {"x": 1}
        assert "dummy-test" in available_providers()
    finally:
        _REGISTERED.pop("dummy-test")
