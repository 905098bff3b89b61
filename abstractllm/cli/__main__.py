"""``python -m abstractllm.cli``."""

import sys

from . import main

sys.exit(main())
