"""DVC stage `report`: see `kinship --help` (outputs as declared in dvc.yaml)."""

import sys

from kinship.cli import main

if __name__ == "__main__":
    sys.exit(main(["report"]))
