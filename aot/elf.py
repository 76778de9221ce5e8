"""Just enough of the ELF header to tell which machine an object file is for."""
from __future__ import annotations

# e_machine values (System V ABI, "ELF header") by LLVM architecture name.
ELF_MACHINES = {"x86_64": 62, "aarch64": 183, "riscv64": 243, "ppc64le": 21, "i386": 3}
_MACHINE_NAMES = {v: k for k, v in ELF_MACHINES.items()}
ELF_MAGIC = b"\x7fELF"


def machine(data: bytes) -> int | None:
    """e_machine of an ELF file (None if `data` is not ELF). EI_DATA (byte 5) gives
    the byte order; e_machine is the 2-byte field at offset 18."""
    if len(data) < 20 or data[:4] != ELF_MAGIC or data[5] not in (1, 2):
        return None
    return int.from_bytes(data[18:20], "little" if data[5] == 1 else "big")


def relocatable_problem(data: bytes) -> str | None:
    """Why `data` is not a well-formed 64-bit relocatable ELF object (header fields and
    the section header table inside the file), or None. Checked before LLVM sees it:
    LLVM's object reader may abort the process on a malformed file."""
    if machine(data) is None:
        return "not an ELF file"
    if data[4] != 2:
        return f"ELF class {data[4]} (expected 2, 64-bit)"
    order = "little" if data[5] == 1 else "big"
    if len(data) < 64:
        return f"{len(data)} bytes, shorter than an ELF header"
    field = lambda offset, size: int.from_bytes(data[offset:offset + size], order)    # noqa: E731
    if field(16, 2) != 1:
        return f"ELF type {field(16, 2)} (expected 1, a relocatable object)"
    shoff, shentsize, shnum = field(40, 8), field(58, 2), field(60, 2)
    if shentsize != 64 or shoff + shentsize * shnum > len(data):
        return f"a section header table ({shnum} x {shentsize} bytes at {shoff}) outside the {len(data)}-byte file"
    return None


def machine_name(code: int | None) -> str:
    if code is None:
        return "not an ELF file"
    return _MACHINE_NAMES.get(code, f"ELF machine {code}")
