"""``python -m vidcap``."""

from vidcap.cli.app import main

if __name__ == "__main__":
    main()
