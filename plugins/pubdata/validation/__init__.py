"""Validation of staged data: the suite, the built-in expectations, the dataset's expectations
file, running it with Great Expectations inside the warehouse, reports and redaction."""
