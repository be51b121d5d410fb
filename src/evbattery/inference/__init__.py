"""One inference path (Predictor) for evaluation, the CLI and the API."""
