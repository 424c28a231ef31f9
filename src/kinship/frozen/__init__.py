"""Frozen members: pretrained models whose per-image features the embed stage computes once
(dlib's descriptor, its 68 landmarks); only a pair head trains per fold, on many more pairs than an
image member sees.

- `params`: the `frozen_members.<name>` section;
- `features`: per-image feature vectors and the pair features of the head;
- `heads`: LightGBM and logistic pair heads (fit with inner-slice selection, save, load);
- `stage`: one member's folds, writing the same outputs as an image member's train stage.
"""
