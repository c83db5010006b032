"""The HTTP and PNG checks of `scripts/container-smoke`, run with the host's python3 and its
standard library only (a fresh clone has no .venv): `python3 -m scripts.smoke COMMAND …`
from the repository root. Each command prints one answer and exits 0 when it holds.

    get URL                     the status of GET URL (0: no answer)
    now                         the time, s since the epoch
    port-free PORT              exit 0 when nothing listens on the port
    refused PORT SECONDS        exit 0 (printing the time) once a connection is refused
    segment URL PNG [PAD]       POST the PNG (padded by PAD bytes): a 200 mask of its size?
    models URL PNG MODALITY     GET /models lists the models, every one loaded, and the PNG (an image
                                of MODALITY, e.g. "colour tissue") sent without model= is answered
                                by the model its X-Model-Route names: one claiming MODALITY, else
                                the default
    synthetic PNG SIDE          write a SIDE×SIDE grey PNG of bright discs: a large real upload
    inflight PORT PNG N SENT [RELEASE]
                                N uploads at once; touch SENT once all are sent; a JSON line each.
                                With RELEASE: each body's last bytes are held back until that
                                file exists, so the uploads stay in flight as long as the caller
                                wants, on any machine
    in-flight PORT N SECONDS    exit 0 once the server's /metrics counts N requests in flight
    times FILE                  first and last answer time of an `inflight` output
    image INSPECT cmd|user|healthcheck   from `podman image inspect` output
"""

from __future__ import annotations

import http.client
import json
import math
import os
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR; ValueError for anything else."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def padded(png: bytes, size: int) -> bytes:
    """The same image with a private ancillary chunk of `size` bytes before IEND: decoders
    skip it, but the upload is that much larger."""
    end = png.rindex(b"IEND") - 4
    return png[:end] + chunk(b"smKe", bytes(size)) + png[end:]


def grey_png(rows: list[bytes]) -> bytes:
    """8-bit grey rows (bytes, one per row) → a PNG."""
    header = struct.pack(">IIBBBBB", len(rows[0]), len(rows), 8, 0, 0, 0, 0)
    raw = b"".join(b"\0" + row for row in rows)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def synthetic(side: int, spacing: int = 24, radius: int = 8) -> bytes:
    """A side×side PNG of bright discs on black, nucleus-sized: an upload that takes the server
    as long as a real micrograph of that size."""
    disc = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
            if math.hypot(dx, dy) <= radius]
    rows = [bytearray(side) for _ in range(side)]
    for cy in range(spacing // 2, side, spacing):
        for cx in range(spacing // 2 + (cy // spacing % 2) * spacing // 2, side, spacing):
            for dy, dx in disc:
                if 0 <= cy + dy < side and 0 <= cx + dx < side:
                    rows[cy + dy][cx + dx] = 200
    return grey_png([bytes(r) for r in rows])


def multipart(path: str, pad: int = 0) -> tuple[tuple[int, int], bytes, str]:
    """((width, height), body, content type) of a form upload of the PNG at `path`."""
    with open(path, "rb") as f:
        image = f.read()
    if pad:
        image = padded(image, pad)
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{os.path.basename(path)}\"\r\nContent-Type: image/png\r\n\r\n").encode()
    body += image + f"\r\n--{boundary}--\r\n".encode()
    return png_size(image), body, f"multipart/form-data; boundary={boundary}"


def check(status: int, ctype: str | None, count: str | None, out: bytes, size: tuple[int, int]) -> str:
    """'' when the answer is a 200 PNG mask of `size` with an integer X-Nuclei-Count, else why not."""
    if status != 200:
        return f"HTTP {status}: {out[:200]!r}"
    try:
        got = png_size(out)
    except ValueError:
        return f"HTTP {status} {ctype}: not a PNG: {out[:60]!r}"
    if ctype != "image/png" or got != size:
        return f"HTTP {status} {ctype}, PNG {got[0]}x{got[1]}, expected image/png {size[0]}x{size[1]}"
    if count is None or not count.isdigit():
        return f"X-Nuclei-Count header missing or not a count: {count!r}"
    return ""


def segment(url: str, path: str, pad: int = 0) -> int:
    size, body, ctype = multipart(path, pad)
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(request, timeout=300) as r:
            status, rtype, out = r.status, r.headers.get("Content-Type"), r.read()
            count = r.headers.get("X-Nuclei-Count")
    except urllib.error.HTTPError as e:
        status, rtype, count, out = e.code, e.headers.get("Content-Type"), None, e.read()
    why = check(status, rtype, count, out, size)
    print(f"upload {len(body)} bytes ({size[0]}x{size[1]}) -> HTTP {status} {rtype}, "
          f"{len(out)} bytes, X-Nuclei-Count {count}" + (f": {why}" if why else ""))
    return 1 if why else 0


def routed_as_listed(listing: dict, headers: dict[str, str], modality: str) -> str:
    """'' when GET /models (`listing`) lists models, all loaded, and an answer's model headers
    (lower-case names) name the model the route picks by it: a model claiming `modality`
    when one serves, else the default; else why not."""
    models = listing.get("models") or []
    refused = [f"{m['name']} ({m['reason']})" for m in models if m.get("status") != "loaded"]
    if not models or refused:
        return f"GET /models: {'refused: ' + ', '.join(refused) if refused else 'no models'}"
    claimants = sorted(m["name"] for m in models if modality in (m.get("modalities") or []))
    name, route = headers.get("x-model-name"), headers.get("x-model-route")
    expected, names = (f"modality: {modality}", claimants) if claimants else ("default", [listing.get("default")])
    if route != expected:
        return f"X-Model-Route {route!r}, expected {expected!r} (claimed by: {', '.join(claimants) or 'none'})"
    if name not in names:
        return f"X-Model-Name {name!r} is not the model the route names ({', '.join(map(str, names))})"
    entry = next(m for m in models if m["name"] == name)
    if (headers.get("x-model-version"), headers.get("x-model-sha256")) != (entry["version"], entry["sha256"]):
        return f"{name}: X-Model-Version/-Sha256 differ from GET /models"
    return ""


def models(url: str, path: str, modality: str) -> int:
    with urllib.request.urlopen(f"{url}/models", timeout=10) as r:
        listing = json.load(r)
    _, body, ctype = multipart(path)
    request = urllib.request.Request(f"{url}/segment", data=body, method="POST", headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(request, timeout=300) as r:
            headers = {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        headers = {}
        print(f"POST /segment: HTTP {e.code}")
    why = routed_as_listed(listing, headers, modality)
    served = ", ".join(f"{m['name']} {m.get('version')}" for m in listing.get("models") or [])
    print(f"GET /models: {served}; {os.path.basename(path)} -> {headers.get('x-model-name')} "
          f"({headers.get('x-model-route')})" + (f": {why}" if why else ""))
    return 1 if why else 0


HELD_BYTES = 64  # of each body, sent once the release file exists


def wait_for(path: str, seconds: float = 300.0) -> None:
    deadline = time.time() + seconds
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.01)


def inflight(port: int, path: str, n: int, sentfile: str, release: str | None = None) -> int:
    """`n` concurrent uploads of `path`; touches `sentfile` once every body is sent (the
    server has them all) or, with `release`, all but their last bytes, which follow once
    the file `release` exists; then prints one JSON line per answer, with its time."""
    size, body, ctype = multipart(path)
    results: list[dict | None] = [None] * n
    sent = threading.Barrier(n + 1)
    held = HELD_BYTES if release else 0

    def one(i: int) -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            conn.putrequest("POST", "/segment")
            conn.putheader("Content-Type", ctype)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            conn.send(body[: len(body) - held])
        except OSError as e:
            sent.wait()
            results[i] = {"i": i, "error": f"send: {e}", "t": time.time()}
            return
        sent.wait()
        try:
            if release:
                wait_for(release)
                conn.send(body[len(body) - held :])
            r = conn.getresponse()
            out = r.read()
            why = check(r.status, r.headers.get("Content-Type"), r.headers.get("X-Nuclei-Count"), out, size)
            results[i] = {"i": i, "status": r.status, "count": r.headers.get("X-Nuclei-Count"),
                          "bytes": len(out), "error": why, "t": time.time()}
        except OSError as e:
            results[i] = {"i": i, "error": f"response: {type(e).__name__}: {e}", "t": time.time()}

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    sent.wait()
    with open(sentfile, "w") as f:
        f.write(f"{time.time()}\n")
    for t in threads:
        t.join()
    for r in results:
        print(json.dumps(r), flush=True)
    return 0 if all(r and not r["error"] for r in results) else 1


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def refused(port: int, seconds: float) -> int:
    """0, printing the time, once a connection to the port is refused within `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not listening(port):
            print(f"{time.time():.3f}")
            return 0
        time.sleep(0.1)
    return 1


def in_flight(port: int, want: int, seconds: float) -> int:
    """0 once the server counts `want` requests in flight (its /metrics gauge; the scrape
    itself counts one), rather than after a fixed pause that a fast machine outruns."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        gauge = [float(line.split()[-1]) for line in text.splitlines() if line.startswith("http_requests_in_flight ")]
        if gauge and gauge[0] - 1 >= want:
            return 0
        time.sleep(0.02)
    return 1


def times(path: str) -> str:
    """'first last': the earliest and latest answer time of an `inflight` output."""
    with open(path) as f:
        stamps = [json.loads(line)["t"] for line in f if line.startswith("{")]
    return f"{min(stamps)} {max(stamps)}" if stamps else "0 0"


def image(inspect: str, what: str) -> str:
    """From `podman image inspect` output: NUL-separated words, or a string."""
    with open(inspect) as f:
        found = json.load(f)[0]
    config = found.get("Config") or {}
    value = {
        "cmd": (config.get("Entrypoint") or []) + (config.get("Cmd") or []),
        "user": config.get("User") or "",
        # Podman reports it beside Config (docker-format images only); Docker inside it.
        "healthcheck": (found.get("Healthcheck") or config.get("Healthcheck") or {}).get("Test") or [],
    }[what]
    return "".join(f"{v}\0" for v in value) if isinstance(value, list) else value


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "get":
        print(get(args[0]))
    elif command == "now":
        print(f"{time.time():.3f}")
    elif command == "port-free":
        return 1 if listening(int(args[0])) else 0
    elif command == "refused":
        return refused(int(args[0]), float(args[1]))
    elif command == "segment":
        return segment(args[0], args[1], int(args[2]) if len(args) > 2 else 0)
    elif command == "models":
        return models(args[0], args[1], args[2])
    elif command == "synthetic":
        data = synthetic(int(args[1]))
        with open(args[0], "wb") as f:
            f.write(data)
        print(f"{args[0]}: {args[1]}x{args[1]}, {len(data)} bytes")
    elif command == "inflight":
        return inflight(int(args[0]), args[1], int(args[2]), args[3], args[4] if len(args) > 4 else None)
    elif command == "in-flight":
        return in_flight(int(args[0]), int(args[1]), float(args[2]))
    elif command == "times":
        print(times(args[0]))
    elif command == "image":
        sys.stdout.write(image(args[0], args[1]))
    else:
        print(f"unknown command {command}: {__doc__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
