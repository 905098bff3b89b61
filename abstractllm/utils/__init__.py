"""AbstractLLM 1.x's ``abstractllm.utils``: only ``abstractllm.utils.logging.configure_logging`` is carried."""
