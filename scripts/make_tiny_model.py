#!/usr/bin/env python
"""Build the tiny random-weight Qwen2.5-VL checkpoint that the tests and `vidcap demo` use.

Usage: scripts/make_tiny_model.py OUT_DIR

About 1 MB, built in seconds, no network. Its captions are noise: it proves the plumbing only.
"""

import sys

from vidcap.tiny_model import build_tiny_model

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[2])
    print(build_tiny_model(sys.argv[1]))
