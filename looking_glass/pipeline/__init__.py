"""The inference pipeline: work units, the enumerator, workers, the results store, job operations."""
