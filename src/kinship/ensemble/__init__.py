"""The ensemble stage: combine the members' out-of-fold predictions and write the submission.

- `inputs`: read every member's OOF / holdout / test table and align it on the prepared pairs;
- `methods`: mean, weighted, rank, weight search and the logistic / LightGBM stackers;
- `nested`: the honest cross-validation (choice, weight search and `min_auc` inside it), the
  one-standard-error rule on paired bootstrap differences, and the ranking score;
- `calibration`: Platt or isotonic, fitted on out-of-fold scores (the test-time one on the
  holdout when there is one: fold-mean scores, as the test's);
- `scores`: AUCs with family-bootstrap intervals and the paired gain (on the uncalibrated
  score), Brier scores and log-losses (on the calibrated one);
- `submission`: the validated, atomically written `submission.csv`;
- `stage`: `run_ensemble(params)`, the whole stage.

Nothing here imports a deep-learning framework.
"""
