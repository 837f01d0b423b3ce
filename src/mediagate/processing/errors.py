"""How processing says no."""


class UnacceptableMedia(Exception):
    """The file is not what it claims, is corrupt, or is unsafe to process. Terminal."""
