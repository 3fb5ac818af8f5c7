"""Source step kinds: read rows from files, the catalog, or the recipe itself. One module per family."""
