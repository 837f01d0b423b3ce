"""Virus scanning with ClamAV through clamd."""
