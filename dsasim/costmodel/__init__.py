"""Analytic FLOP/byte and roofline cost model of dense MLA and DeepSeek Sparse Attention serving."""
