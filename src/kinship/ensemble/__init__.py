"""The ensemble stage: combine the members' out-of-fold predictions and write the submission.

- `inputs`: read every member's OOF / holdout / test table and align it on the prepared pairs;
- `methods`: mean, weighted, rank, weight search and the logistic / LightGBM stackers;
- `nested`: the honest cross-validation (choice, weight search and `min_auc` inside it);
- `calibration`: Platt or isotonic, fitted on out-of-fold scores;
- `scores`: AUCs with family-bootstrap intervals, the paired gain, Brier scores;
- `submission`: the validated, atomically written `submission.csv`;
- `stage`: `run_ensemble(params)`, the whole stage.

Nothing here imports a deep-learning framework.
"""
