"""dtype on load: ``auto`` casts float weights, and the float parts of a quantized model (scales, biases,
norms), to float32 on CPUs; the output then equals raw mlx-lm with the same cast, token for token."""

from __future__ import annotations

import pytest

from abstractllm import create_llm
from abstractllm.testing import demo_model


def _raw_tokens(path, cast: bool, prompt: str, n: int) -> list[int]:
    import mlx.core as mx
    import mlx_lm
    from mlx_lm.sample_utils import make_sampler

    from abstractllm.providers.mlx.text import cast_for_device

    model, tok = mlx_lm.load(str(path))
    if cast:
        cast_for_device(model, "auto", on_gpu=False)
        mx.eval(model.parameters())
    ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    return [r.token for r in mlx_lm.stream_generate(model, tok, ids, max_tokens=n, sampler=make_sampler(0.0))]


def _float_dtypes(llm) -> set[str]:
    from mlx.utils import tree_flatten

    def collect():
        import mlx.core as mx

        return {str(v.dtype) for _, v in tree_flatten(llm._adapter.model.parameters())
                if mx.issubdtype(v.dtype, mx.floating)}

    return llm.worker.call(collect)


@pytest.mark.parametrize("quantize", [None, 4])
def test_auto_dtype_on_cpu_casts_half_precision_to_float32_with_parity(quantize):
    path = demo_model("text", "tiny", dtype="bfloat16", **({"quantize": quantize} if quantize else {}))
    llm = create_llm("mlx", model=str(path), temperature=0.0, max_tokens=10)
    reply = llm.generate("Hello there")
    assert _float_dtypes(llm) == {"mlx.core.float32"}
    assert reply.token_ids == _raw_tokens(path, cast=True, prompt="Hello there", n=10)
    llm.close()

    kept = create_llm("mlx", model=str(path), temperature=0.0, max_tokens=10, dtype="bfloat16")
    kept.generate("Hello there")
    assert _float_dtypes(kept) == {"mlx.core.bfloat16"}
    kept.close()
