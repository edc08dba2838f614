"""Evaluation of a leaf against its teacher: retrieval, STS, alignment, speed, reports."""
