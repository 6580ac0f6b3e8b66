"""Looking Glass: find buildings in satellite imagery, per zoom-18 tile, at scale."""

from pathlib import Path

__version__ = "0.1.0"

# The source checkout (or image) that holds lambdas/ and batch_jobs/ beside this package; the
# embedded run starts the very same entry points the cloud does.
SOURCE_ROOT = Path(__file__).resolve().parent.parent
