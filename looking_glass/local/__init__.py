"""One machine, no AWS account: embedded AWS, deployment lookup, local tile servers, the demo."""
