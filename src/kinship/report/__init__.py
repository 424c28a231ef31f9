"""The report stage: one self-contained `reports/index.html` comparing the members and the ensemble.

- `inputs`: read and check the earlier stages' outputs (errors name the file and key);
- `numbers`: ROC points, thresholds, confusion matrix, AUC per negative kind, reliability bins;
- `content`: everything the page shows, computed once;
- `figures`: ROC, correlation and reliability figures as reproducible SVG (matplotlib);
- `html`, `sections`: the page, with inline CSS and SVG, no script and no URL;
- `stage`: `run_report(params)`, the whole stage.

Nothing here imports a deep-learning framework.
"""
