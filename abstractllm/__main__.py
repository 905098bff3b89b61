"""``python -m abstractllm``: the same as the ``abstractllm`` command."""

import sys

from .cli import main

sys.exit(main())
