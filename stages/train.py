"""DVC stage `train@<member>`: all folds of one member (`python stages/train.py MEMBER`)."""

import sys

from kinship.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "--member", sys.argv[1]]))
