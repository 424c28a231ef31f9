"""A picture of one synthetic family for the README: a row of photos per member, labelled by role.

python -m kinship.synth.figure docs/images/synthetic_family.png
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

from kinship.synth.config import SynthConfig
from kinship.synth.dataset import build_families, photo_rng
from kinship.synth.family import Family
from kinship.synth.render import render_photos

_GENERATION = {"grandfather": 0, "grandmother": 0, "father": 1, "mother": 1}
_LABEL_WIDTH = 190


def family_figure(cfg: SynthConfig, photos: int = 5) -> Image.Image:
    """Photos of each member of the most complete train family (three generations if any)."""
    train, _ = build_families(cfg)
    index = max(range(len(train)), key=lambda k: _completeness(train[k]))
    family = train[index]
    members = sorted(family.photographed(), key=lambda i: (_generation(family, i), i))
    size = cfg.image_size
    sheet = Image.new("RGB", (_LABEL_WIDTH + photos * size, len(members) * size), "white")
    draw = ImageDraw.Draw(sheet)
    for row, person in enumerate(members):
        rngs = [photo_rng(cfg, index, person, k) for k in range(photos)]
        rendered = render_photos(family.people[person].looks, size, cfg.difficulty, rngs)
        for k, (pixels, _) in enumerate(rendered):
            sheet.paste(Image.fromarray(pixels), (_LABEL_WIDTH + k * size, row * size))
        draw.text((8, row * size + size // 2 - 12), _label(family, person), fill="black")
    return sheet


def _generation(family: Family, person: int) -> int:
    role = family.people[person].role.split(" ")[0]
    return _GENERATION.get(role, 2)


def _completeness(family: Family) -> tuple[int, int, int]:
    """Rank families for the picture: generations shown, nobody missing, about six people."""
    shown = family.photographed()
    generations = len({_generation(family, i) for i in shown})
    return generations, len(shown) == len(family.people), -abs(len(shown) - 6)


def _label(family: Family, person: int) -> str:
    p = family.people[person]
    return f"{p.role}\n{family.family_id}/MID{p.mid}, age {p.age:.0f}"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "docs/images/synthetic_family.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    family_figure(SynthConfig()).save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
