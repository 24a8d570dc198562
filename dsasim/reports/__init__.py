"""Plots and tables drawn from the cost model's DataFrames."""
