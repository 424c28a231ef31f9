"""Synthetic FIW: families with inherited facial traits, rendered as Kaggle-format face photos.

The project's embedded default dataset: `kinship.synth.dataset.generate(out_dir, SynthConfig(...))`
writes train/, train_relationships.csv, test/, sample_submission.csv and test_labels.csv, and
returns counts. This package's import loads nothing (params validation imports only
`kinship.synth.config`, so the other stages do not depend on the renderer).
"""
