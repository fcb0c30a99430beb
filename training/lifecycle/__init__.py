"""What happens to a trained model: the MLflow runs (`tracking`, `runs`), the registry and its
aliases (`registry`) and the daily gate (`gate`)."""
