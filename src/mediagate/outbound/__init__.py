"""Calls out to the product's backend (webhooks, the validation hook): the address is
checked before every connection, the answer is bounded, the request signed."""
