"""Source tables for the embedded warehouse: synthetic data under production table names."""
