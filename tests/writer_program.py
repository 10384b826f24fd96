"""A test writer: numbered, checksummed lines through print, os.write and C printf.

    python writer_program.py LOG INDEX LINES SEED [--child] [--plain-dup2]

Each line is "TAG SEQ CRC BODY" with TAG = role+index.pid.method, so the
checker (stress_check.py) can prove every line arrived once, whole, in
order and from the pid that wrote it.  The actor redirects (or, with
--plain-dup2, does what SkyRL does: dup2 of an O_APPEND file), starts a
child that shares its fds, and both write.
"""

import ctypes
import os
import random
import subprocess
import sys
import zlib

ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?-_=+()[]{}"


def body(rng: random.Random) -> str:
    length = int(round(2 ** rng.uniform(0, 11.55)))  # 1 B to ~3 KB, log-uniform
    return "".join(rng.choice(ALPHABET) for _ in range(length))


def line(tag: str, seq: int, text: str) -> str:
    return f"{tag} {seq} {zlib.crc32(text.encode()):08x} {text}"


def write_lines(role: str, index: int, count: int, seed: int) -> None:
    rng = random.Random(seed)
    libc = ctypes.CDLL(None)
    pid = os.getpid()
    for seq in range(count):
        for method in ("print", "write", "printf"):
            text = line(f"{role}{index}.{pid}.{method}", seq, body(rng))
            cut = rng.randrange(len(text) + 1)
            if method == "print":
                print(text[:cut], text[cut:], sep="")
            elif method == "write":
                data = (text + "\n").encode()
                third = len(data) // 3
                for piece in (data[:third], data[third : 2 * third], data[2 * third :]):
                    os.write(1, piece)
            else:
                libc.printf(b"%s\n", text.encode())
    libc.fflush(None)
    sys.stdout.flush()


def main() -> None:
    log, index, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if "--child" in sys.argv:
        write_lines("child", index, count, seed + 1)
        return
    if "--plain-dup2" in sys.argv:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    else:
        import skyrl_fdlog

        skyrl_fdlog.redirect(log, name=f"actor{index}")
    child = subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--child"])
    write_lines("actor", index, count, seed)
    child.wait()


if __name__ == "__main__":
    main()
