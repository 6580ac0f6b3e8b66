"""Looking Glass: find buildings in satellite imagery, per zoom-18 tile, at scale."""

__version__ = "0.1.0"
