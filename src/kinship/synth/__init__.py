"""Synthetic FIW: families with inherited facial traits, rendered as Kaggle-format face photos.

The project's embedded default dataset: `generate(out_dir, SynthConfig(...))` writes train/,
train_relationships.csv, test/, sample_submission.csv and test_labels.csv, and returns counts.
"""

from kinship.synth.config import SynthConfig
from kinship.synth.dataset import generate

__all__ = ["SynthConfig", "generate"]
