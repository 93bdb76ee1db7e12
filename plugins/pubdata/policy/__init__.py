"""The data publishing policy as code: forbidden columns, levels and categories, the verdict, geo rules."""
