"""Free TCP ports on loopback for services the tests start."""

import random
import socket
import time

# Below the kernel's ephemeral range (32768+): a port from that range can be taken
# by a client's own outgoing connection while a test has its server stopped (paho
# even connects to itself), and then the restart fails with "address in use".
_LOW, _HIGH = 20000, 32000


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port outside the ephemeral range that nobody listens on right now."""
    for _ in range(200):
        port = random.randint(_LOW, _HIGH)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port between {_LOW} and {_HIGH} on {host}")


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until something accepts connections on host:port, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout} s")
