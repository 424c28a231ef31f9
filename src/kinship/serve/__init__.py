"""`kinship serve`: a web page and a JSON API that score a pair of photos with the trained pipeline.

`kinship.serve.app.create_app(predictor)` builds the Flask app around one loaded
`kinship.predictor.Predictor`; `run_serve` loads it once and serves the app with waitress.
Uploads stay in memory (`kinship.serve.uploads`); the API is described by a hand-written OpenAPI
document (`kinship.serve.openapi`) that a test checks against the app's routes and fields.
"""
