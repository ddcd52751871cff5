"""Photo sources: each turns a query or a folder into PhotoRecords."""
