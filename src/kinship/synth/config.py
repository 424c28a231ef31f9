"""The generator's settings: one frozen dataclass of plain YAML-able values, checked on creation."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SynthConfig:
    """Size, look and difficulty of a synthetic FIW-format dataset (defaults = the demo dataset).

    seed: every random draw derives from it; same seed, same bytes.
    n_families / n_test_families: families under train/ and (separate) families behind test/.
    image_size: side of the square JPEG photos in pixels.
    difficulty: 0.8 is the tuned default (HOG + logistic regression 0.82 on held-out families,
        inside the [0.65, 0.85] window; learnable by the demo's random-init members in about a
        CPU-minute each); 0 means exact inheritance and studio photos, larger
        values mean more trait mutation and stronger per-photo nuisance (pose, light, noise, JPEG).
    photos_per_person: inclusive [min, max] number of photos of a photographed person.
    family_size: inclusive [min, max] number of photographed people in a family.
    missing_folder_rate: probability that a relative who was never photographed is still named
        in train_relationships.csv (Kaggle's rows without a folder).
    reverse_duplicate_rate: fraction of relationship rows also written in reverse order.
    test_pairs_per_relation: image pairs drawn for each kin relation of a test family.
    """

    seed: int = 0
    n_families: int = 100
    n_test_families: int = 30
    image_size: int = 96
    difficulty: float = 0.8
    photos_per_person: list[int] = field(default_factory=lambda: [1, 8])
    family_size: list[int] = field(default_factory=lambda: [2, 9])
    missing_folder_rate: float = 0.35
    reverse_duplicate_rate: float = 0.05
    test_pairs_per_relation: int = 2

    def __post_init__(self) -> None:
        _check_int("seed", self.seed, 0, 2**32 - 1)
        _check_int("n_families", self.n_families, 2, 9000)
        _check_int("n_test_families", self.n_test_families, 2, 999)  # ids end at F9999
        _check_int("image_size", self.image_size, 32, 512)
        _check_float("difficulty", self.difficulty, 0.0, 3.0)
        _check_range("photos_per_person", self.photos_per_person, 1, 1000)
        _check_range("family_size", self.family_size, 2, 9)
        _check_float("missing_folder_rate", self.missing_folder_rate, 0.0, 1.0)
        _check_float("reverse_duplicate_rate", self.reverse_duplicate_rate, 0.0, 1.0)
        _check_int("test_pairs_per_relation", self.test_pairs_per_relation, 1, 100)
        # store a plain list even when a tuple was given, so the config stays YAML-able
        object.__setattr__(self, "photos_per_person", list(self.photos_per_person))
        object.__setattr__(self, "family_size", list(self.family_size))


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"SynthConfig.{name}: expected an int in [{low}, {high}], got {value!r}")


def _check_float(name: str, value: object, low: float, high: float) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not low <= value <= high:
        raise ValueError(f"SynthConfig.{name}: expected a number in [{low}, {high}], got {value!r}")


def _check_range(name: str, value: object, low: int, high: int) -> None:
    ok = isinstance(value, list | tuple) and len(value) == 2
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if not ok or not low <= value[0] <= value[1] <= high:
        raise ValueError(
            f"SynthConfig.{name}: expected [min, max] ints with {low} <= min <= max <= {high}, "
            f"got {value!r}"
        )
