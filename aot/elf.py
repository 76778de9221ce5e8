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


def machine_name(code: int | None) -> str:
    if code is None:
        return "not an ELF file"
    return _MACHINE_NAMES.get(code, f"ELF machine {code}")
