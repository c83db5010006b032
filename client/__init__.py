"""`nuclei-client`: a folder of images through a running service, with retries, resume and a
summary table. Talks HTTP only; imports `nuclei` for the file types, never `app`.

    api   Client(url).segment(path, format=...): one image, retried until it is answered
    cli   walks IN, runs several at once, writes outputs mirroring IN and OUT/summary.csv
"""

from client.api import Client, ClientError, Segmented

__all__ = ["Client", "ClientError", "Segmented"]
