"""Readers for real source formats; one module per format."""
