"""Test helpers for users and contributors writing tfrobust-compatible layers."""

from tfrobust.testing._layer_test import LayerTestResult, layer_test

__all__ = ["LayerTestResult", "layer_test"]
