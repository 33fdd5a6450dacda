"""The package version, importable from anywhere without importing the package facade."""

__version__ = "0.1.0"
