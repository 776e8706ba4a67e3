#!/usr/bin/env python3
"""Write a small random gpt-oss checkpoint for tests (see gpt_oss_metal.testing.checkpoints).

    scripts/create-test-checkpoint.py --layout hf-dense --seed 0 -o /tmp/tiny-hf-dense
"""

import sys

from gpt_oss_metal.testing.checkpoints import main

if __name__ == "__main__":
    sys.exit(main())
