"""Pure rules of the upload flow: validation, object keys, the status machine. No I/O."""
