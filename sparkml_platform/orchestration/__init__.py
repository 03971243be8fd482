"""Compositions of stages: pipelines, re-training and schedules."""
