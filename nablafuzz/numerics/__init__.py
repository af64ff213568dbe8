"""`nablafuzz numerics`: interval analysis of models' forward and backward graphs (RANUM)."""
