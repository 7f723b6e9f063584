"""Code both sides of the link share: container format, tile geometry, bands, entropy tables."""
