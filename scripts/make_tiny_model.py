#!/usr/bin/env python
"""Build a tiny random-weight video VLM checkpoint of one family (tests, `vidcap demo`, benchmarks).

Usage: scripts/make_tiny_model.py [--family FAMILY] OUT_DIR  (FAMILY: vidcap.tiny_model.FAMILIES)

About 1 MB, built in seconds, no network. Its captions are noise: it proves the plumbing only.
"""

import argparse

from vidcap.tiny_model import FAMILIES, build_tiny_model

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the checkpoint to")
    parser.add_argument(
        "--family", choices=FAMILIES, default=FAMILIES[0], help="model family (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    args = parser.parse_args()
    print(build_tiny_model(args.out_dir, family=args.family, seed=args.seed))
