"""The web service: FastAPI over `nuclei`. Starts in `app.__main__` (`python -m app`)."""
