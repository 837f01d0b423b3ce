"""Bearer JWT authentication: who is calling and for which organization."""
