"""Lightweight attention CNNs for blood-cell and histopathology image classification.

Data flows one way: data -> models -> training -> experiment (results/*.json) -> plots -> report.
"""
