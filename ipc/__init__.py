"""Shared-memory primitives of stratabatch: segments, rings, doorbells, arena, counters, frames.

This package depends on nothing else of stratabatch and holds no batching logic.
"""
