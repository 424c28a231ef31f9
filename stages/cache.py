"""DVC stage `cache@<size>`: decode every image once at one size (`python stages/cache.py SIZE`)."""

import sys

from kinship.cli import main

if __name__ == "__main__":
    sys.exit(main(["cache", "--size", sys.argv[1]]))
