"""cffi builder (API, out-of-line mode) for ``xarray_om._om_native``.

The C declarations exposed to Python are read from the public headers so that
they cannot drift from the implementation. ``OM_NATIVE_SANITIZE=1`` builds
with AddressSanitizer + UBSan (see ``native/sanitize.sh``); ``OM_NATIVE_DEBUG=1``
builds without optimisation.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
HEADERS = ["om_pfor.h", "om_codec.h", "om_chunks.h", "om_dispatch.h"]
SOURCES = sorted(str(p.relative_to(HERE.parent)) for p in HERE.glob("*.c"))


def _cdef_from_headers() -> str:
    """Declarations of the public headers, without preprocessor lines and comments."""
    out = []
    for name in HEADERS:
        text = (HERE / name).read_text()
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        for line in text.splitlines():
            s = line.strip()
            if s.startswith("#define") and re.match(r"#define\s+\w+\s+\(?-?\d+\)?\s*$", s):
                macro, value = s.split()[1], s.split()[2].strip("()")
                out.append(f"#define {macro} {value}")
            elif s.startswith("#"):
                continue
            else:
                out.append(line)
    return "\n".join(out)


def _compile_args() -> tuple[list[str], list[str]]:
    args = ["-std=c99", "-Wall", "-Wextra", "-fno-strict-aliasing"]
    link: list[str] = []
    if os.environ.get("OM_NATIVE_SANITIZE"):
        args += [
            "-O1",
            "-g",
            "-fno-omit-frame-pointer",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=undefined",
        ]
        link += ["-fsanitize=address,undefined"]
    elif os.environ.get("OM_NATIVE_DEBUG"):
        args += ["-O0", "-g"]
    else:
        args += ["-O3"]
    return args, link


ffibuilder = FFI()
ffibuilder.cdef(_cdef_from_headers())
_cflags, _ldflags = _compile_args()
ffibuilder.set_source(
    "xarray_om._om_native",
    "\n".join(f'#include "{h}"' for h in HEADERS),
    sources=SOURCES,
    include_dirs=[str(HERE.relative_to(HERE.parent))],
    extra_compile_args=_cflags,
    extra_link_args=_ldflags,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
