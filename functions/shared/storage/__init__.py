"""Where a webhook is kept: the bus it is put on, the table, the bucket and its layout, claim checks."""
