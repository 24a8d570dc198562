"""Measurements that check the cost model: torch reference kernels and a timing harness.

``kernels`` contains small torch kernels of dense MLA and DeepSeek Sparse Attention, and ``timing`` times a
callable with its conditions (device, dtype, shapes, threads, torch version). Both modules need torch,
an optional dependency, so this package imports neither of them.
"""
