"""``python -m gpt_oss_metal``: the ``gpt-oss-metal`` command."""

import sys

from .cli import main

sys.exit(main())
