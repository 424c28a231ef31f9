"""DVC stage `synthesize`: see `kinship --help`. Reads params.yaml; writes the outputs dvc.yaml declares."""

import sys

from kinship.cli import main

if __name__ == "__main__":
    sys.exit(main(["synthesize"]))
