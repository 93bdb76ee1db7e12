"""Static analysis of reviewed queries: parsing, the columns each scope produces, lineage, the rules."""
