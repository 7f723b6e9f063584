"""Downstream tasks that judge what survives compression: scene classification and cloud masking."""
