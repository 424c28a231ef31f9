"""DVC stage `embed`: dlib's frozen face models once per image (`python stages/embed.py`)."""

import sys

from kinship.cli import main

if __name__ == "__main__":
    sys.exit(main(["embed"]))
