"""A pytest-native model QA harness: quality gates as pytest tests, promotion in MLflow."""

__version__ = "0.1.0"
