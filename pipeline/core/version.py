"""The package version: part of every build key (a new version rebuilds stores) and manifest."""

__version__ = "0.1.0"
