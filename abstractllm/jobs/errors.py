"""The job store's errors, in abstractllm's one exception tree (``abstractllm.exceptions``).

- ``InvalidConfigError`` (an ``InvalidParameterError``): a job config, or lines of a JSONL file, are
  invalid; ``problems`` lists every problem found (``"line 3: max_tokens: ..."``), not just the first.
- ``JobNotFoundError`` (an ``InvalidRequestError`` and a ``LookupError``): no job, file or batch has that id.
- ``JobStateError`` (an ``InvalidRequestError``): the job cannot do that in its state (cancel a completed job).
- ``JobStoreError``: the store cannot be opened or used (a missing folder, a bad URL, an unreachable
  PostgreSQL server, a database written by a newer abstractllm, a missing ``jobs`` extra).
"""

from __future__ import annotations

from typing import Any, Sequence

from ..exceptions import AbstractLLMError, InvalidParameterError, InvalidRequestError

__all__ = ["InvalidConfigError", "JobNotFoundError", "JobStateError", "JobStoreError"]


class InvalidConfigError(InvalidParameterError):
    """A job config (or JSONL lines of configs) is invalid. ``problems``: every problem, one string each;
    ``param``: the first offending field; ``line``: its line number in a JSONL file, when there is one."""

    def __init__(self, problems: Sequence[str], *, param: str | None = None, line: int | None = None,
                 where: str = "job config", **kwargs: Any) -> None:
        self.problems = list(problems)
        head = f"Invalid {where} ({len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}): "
        super().__init__(head + "; ".join(self.problems), param=param, **kwargs)
        self.line = line
        if line is not None:
            self.details.setdefault("line", line)


class JobNotFoundError(InvalidRequestError, LookupError):
    """No job (or batch, or file) with that id in the store. ``job_id`` names it."""

    def __init__(self, message: str = "", *, job_id: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.job_id = job_id


class JobStateError(InvalidRequestError):
    """The job is in a state that does not allow the operation (``status`` says which)."""

    def __init__(self, message: str = "", *, status: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status = status


class JobStoreError(AbstractLLMError):
    """The job store cannot be opened or used; the message says why and what to do."""
