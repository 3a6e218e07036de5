"""The write-side domain: aggregates, their events and their rules.

This package imports nothing else of Flashpoint's, so it can be read and tested alone.
"""
