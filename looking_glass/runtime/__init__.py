"""Runtime vocabulary: resource names, the deployment contract and typed settings."""
