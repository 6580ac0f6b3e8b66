"""Entry points of the AWS Batch images (``batch_jobs/Dockerfile``); the code is :mod:`looking_glass`."""
