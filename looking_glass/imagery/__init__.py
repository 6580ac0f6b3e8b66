"""Imagery: where tiles come from (XYZ/TMS templates, tokens, GeoTIFF/COG) and how they are decoded."""
