"""Tiling: AOI parsing and validation, the zoom-18 tile cover, job size and cost estimates."""
