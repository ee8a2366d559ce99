"""The ``tfrobust`` command line (absl). Nothing in the library imports this package."""
